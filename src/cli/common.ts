/** What every CLI command shares: configuration, a database for the command's duration, errors. */
import { loadConfig, type Config } from '../config.ts';
import type { Database } from '../db/connect.ts';
import { openCliDatabase } from './database.ts';
import { closeOnStop, interrupted } from './signals.ts';
import { UsageError } from './usage-error.ts';

export { UsageError };

/**
 * Opens the database (starting the embedded one if needed), runs `fn`, and closes everything, also
 * when the command is interrupted (Ctrl-C): an embedded server it started must not outlive it.
 */
export async function withDatabase<T>(fn: (db: Database, config: Config) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const db = await openCliDatabase(config, { poolSize: 4, announce: true });
  let closing: Promise<void> | undefined;
  const close = () => (closing ??= db.close());
  const unregister = closeOnStop(close);
  try {
    return await fn(db, config);
  } finally {
    unregister();
    await close();
  }
}

/** Runs a command action, turning errors into one clear line on stderr and a non-zero exit code. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      // Interrupted by a stop signal: the failure is the interruption's, and the exit code says so.
      if (interrupted()) return;
      const e = err as Error & { hint?: string; code?: string };
      process.stderr.write(`error: ${e.message}\n`);
      if (e.hint) process.stderr.write(`hint: ${e.hint}\n`);
      if (process.env.DSX_DEBUG && e.stack) process.stderr.write(`${e.stack}\n`);
      process.exitCode = 1;
    }
  };
}

/** Parses a positive integer argument (at most 2^53 - 1, what a JavaScript number holds exactly) or throws a UsageError naming it. */
export function positiveInt(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0 || n > Number.MAX_SAFE_INTEGER) {
    throw new UsageError(`${name} must be a positive integer up to ${Number.MAX_SAFE_INTEGER} (got ${JSON.stringify(value)})`);
  }
  return n;
}

/** Parses a JSON argument or throws a UsageError naming it. */
export function jsonArg(name: string, value: string): unknown {
  try {
    return JSON.parse(value);
  } catch (err) {
    throw new UsageError(`${name} is not valid JSON: ${(err as Error).message}`);
  }
}

/** Prints a value as JSON (scripts) or through `human` (people). */
export function output(json: boolean, value: unknown, human: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${human()}\n`);
}
