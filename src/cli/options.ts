/**
 * Checked values of command-line options: numbers within their ranges, enumerations, fault settings.
 * Every refusal is a UsageError naming the option, what it accepts and what it got.
 */
import { z } from 'zod';
import { OUTCOMES } from '../pipeline/outcomes.ts';
import { UsageError } from './usage-error.ts';

/** Ranges of the numeric options, and why each bound is where it is. */
export const LIMITS = {
  /** Synthetic identities are `obj-` + 9 digits, so a synthetic integration holds at most 999,999,999 objects. */
  syntheticObjects: { min: 0, max: 999_999_999 },
  /** `results` holds its rows in memory and prints them at once; page with --since beyond this. */
  resultsLimit: { min: 1, max: 100_000 },
  /** Jobs at once in one worker process; past ~1,000 the local queue and pool only add memory. */
  workerConcurrency: { min: 1, max: 1000 },
  /** TCP ports; 0 asks the system for a free one (the address is printed). */
  port: { min: 0, max: 65_535 },
  /** Ten minutes: far beyond DSXA_TIMEOUT_MS (30 s by default), so every timeout path can be provoked. */
  latencyMs: { min: 0, max: 600_000 },
  /** Scans the emulator serves at once (the benchmark uses 256). */
  capacity: { min: 1, max: 10_000 },
  /** Fractions of requests. */
  rate: { min: 0, max: 1 },
  /** Bytes; JavaScript counts exactly up to 2^53 - 1. */
  bytes: { min: 1, max: Number.MAX_SAFE_INTEGER },
  /** Ids are bigint in the database; the CLI handles them exactly up to 2^53 - 1. */
  id: { min: 1, max: Number.MAX_SAFE_INTEGER },
  /** About 100 years. */
  days: { min: 1, max: 36_500 },
  /** Ten years, in seconds. */
  ttlSeconds: { min: 1, max: 315_360_000 },
} as const;

/** Bounds of one numeric option. */
export interface Range {
  min: number;
  max: number;
}

const INTEGER = /^[0-9]+$/;
const DECIMAL = /^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$/;

/** A whole number written in decimal digits within `range`, or a UsageError with the range. */
export function intInRange(name: string, value: string, range: Range): number {
  const n = Number(value);
  if (!INTEGER.test(value.trim()) || n < range.min || n > range.max) {
    throw new UsageError(`${name} must be a whole number from ${range.min} to ${range.max} (got ${JSON.stringify(value)})`);
  }
  return n;
}

/** A decimal number within `range`, or a UsageError with the range. */
export function numberInRange(name: string, value: string, range: Range): number {
  const n = Number(value);
  if (!DECIMAL.test(value.trim()) || n < range.min || n > range.max) {
    throw new UsageError(`${name} must be a number from ${range.min} to ${range.max} (got ${JSON.stringify(value)})`);
  }
  return n;
}

/** An outcome name (results --outcome), or a UsageError listing them. */
export function outcomeOption(value: string): string {
  if (!(OUTCOMES as readonly string[]).includes(value)) {
    throw new UsageError(`--outcome must be one of ${OUTCOMES.join(', ')} (got ${JSON.stringify(value)})`);
  }
  return value;
}

const rate = z.number().min(0).max(1);
const faultsSchema = z.strictObject({
  list_fail_rate: rate.optional(),
  read_fail_rate: rate.optional(),
  fail_first_lists: z.number().int().min(0).max(1_000_000_000).optional(),
});

/**
 * Checks the fault-injection part of `--settings` (`{"faults": {"list_fail_rate": 0.1, ...}}`): rates are
 * fractions from 0 to 1, `fail_first_lists` a count, nothing else (a misspelt key would inject nothing).
 */
export function checkFaultSettings(settings: Record<string, unknown>): void {
  if (settings.faults === undefined) return;
  const r = faultsSchema.safeParse(settings.faults);
  if (r.success) return;
  const issue = r.error.issues[0]!;
  const where = ['faults', ...issue.path.map(String)].join('.');
  const expected =
    issue.code === 'unrecognized_keys'
      ? `unknown key ${issue.keys.map((k) => JSON.stringify(k)).join(', ')} (expected list_fail_rate, read_fail_rate, fail_first_lists)`
      : where.endsWith('_rate')
        ? 'must be a number from 0 to 1'
        : where.endsWith('fail_first_lists')
          ? 'must be a whole number from 0 to 1000000000'
          : 'must be an object like {"list_fail_rate": 0.1, "read_fail_rate": 0.1}';
  throw new UsageError(`--settings ${issue.code === 'unrecognized_keys' ? 'faults' : where}: ${expected}`);
}
