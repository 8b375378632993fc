/**
 * Row ids as our own fields take them. Every id of the API is a `BigInt` (PostgreSQL bigint), written
 * as a string, which is what `rowId` returns. PostGraphile's BigInt scalar
 * (graphile-build's stringTypeSpec) passes any variable through as `"" + value`, so a JSON number works
 * in variables, and accepts only string literals in a document; it checks nothing else, leaving it to
 * PostgreSQL's cast. Our fields build LISTEN topics and run SQL from the id, so they check it first and
 * say what an id looks like.
 */
import { SafeError } from 'postgraphile/grafast';

/** The largest PostgreSQL bigint, 2^63 - 1. */
const BIGINT_MAX = 9_223_372_036_854_775_807n;

/** A positive integer of at most 19 digits (2^63 - 1 has 19), without sign, spaces or leading zeros. */
const DIGITS = /^[1-9][0-9]{0,18}$/;

/** `value` as the canonical decimal string of a row id, or a SafeError naming the argument and the rule. */
export function rowIdOf(name: string, value: unknown): string {
  const text = typeof value === 'string' ? value : typeof value === 'number' && Number.isSafeInteger(value) ? String(value) : undefined;
  if (text === undefined || !DIGITS.test(text) || BigInt(text) > BIGINT_MAX) {
    throw new SafeError(`${name} must be a row id: a positive integer up to ${BIGINT_MAX}, as rowId returns it (e.g. "42"); got ${JSON.stringify(value) ?? String(value)}`, {
      code: '22023',
    });
  }
  return text;
}
