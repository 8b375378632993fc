/** What every CLI command shares: configuration, a database for the command's duration, errors. */
import { loadConfig, type Config } from '../config.ts';
import { openDatabase, type Database } from '../db/connect.ts';

/** A user-facing error: printed without a stack trace, exit code 1. */
export class UsageError extends Error {}

/** Opens the database (starting the embedded one if needed), runs `fn`, and closes everything. */
export async function withDatabase<T>(fn: (db: Database, config: Config) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const db = await openDatabase(config, { poolSize: 4 });
  try {
    return await fn(db, config);
  } finally {
    await db.close();
  }
}

/** Runs a command action, turning errors into one clear line on stderr and a non-zero exit code. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      const e = err as Error & { hint?: string; code?: string };
      process.stderr.write(`error: ${e.message}\n`);
      if (e.hint) process.stderr.write(`hint: ${e.hint}\n`);
      if (process.env.DSX_DEBUG && e.stack) process.stderr.write(`${e.stack}\n`);
      process.exitCode = 1;
    }
  };
}

/** Parses a positive integer argument or throws a UsageError naming it. */
export function positiveInt(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`${name} must be a positive integer (got ${JSON.stringify(value)})`);
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
