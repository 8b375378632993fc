/**
 * Field types shared by the provider formats, each accepting only what PostgreSQL will store, so that a
 * permanently bad value is refused at the edge with its field named (HTTP 400, the sender stops
 * retrying) instead of failing in the database (which the intake must answer 503, "retry later").
 */
import { z } from 'zod';

/**
 * Why `s` cannot be stored in a PostgreSQL text or jsonb value, or null. PostgreSQL refuses U+0000
 * in both, and jsonb refuses an unpaired UTF-16 surrogate (`"\ud800"` is valid JSON to JSON.parse).
 */
export function textProblem(s: string): string | null {
  if (s.includes('\0')) return 'contains a NUL character (U+0000), which cannot be stored; remove it';
  if (!s.isWellFormed()) return 'contains an unpaired UTF-16 surrogate (U+D800-U+DFFF), which is not valid Unicode and cannot be stored';
  return null;
}

/** A string that PostgreSQL can store (see textProblem). */
export const storedText = z.string().superRefine((s, ctx) => {
  const problem = textProblem(s);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

// RFC 3339 date-time with a mandatory offset: what S3, EventBridge, Event Grid and CloudEvents send.
// Up to 9 fractional digits (Event Grid sends 7; PostgreSQL keeps microseconds and rounds the rest).
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;
const EXAMPLE = 'such as 2026-11-28T10:00:00Z or 2026-11-28T11:00:00.123+01:00';

function isLeap(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
}

const DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/**
 * The canonical form of an RFC 3339 timestamp (upper-case `T` and `Z`), or `{ error }` saying what is
 * wrong. `Date.parse` is no test: it accepts `"2026-13-45T..."` in some forms, `"hello 2"`, and years
 * to 275760, which PostgreSQL refuses; each of those made the intake answer 503 forever.
 */
export function canonicalTimestamp(s: string): { value: string } | { error: string } {
  const m = RFC3339.exec(s);
  if (!m) return { error: `must be an RFC 3339 timestamp with a time zone, ${EXAMPLE}` };
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  // Year 0000 is refused by PostgreSQL; 9999 is as far as four digits go.
  if (year < 1) return { error: 'year 0000 does not exist: years run from 0001 to 9999' };
  if (month < 1 || month > 12) return { error: `month ${m[2]} is out of range (01-12)` };
  const days = month === 2 && isLeap(year) ? 29 : DAYS[month - 1]!;
  if (day < 1 || day > days) return { error: `day ${m[3]} is out of range for ${m[1]}-${m[2]} (01-${days})` };
  if (hour > 23) return { error: `hour ${m[4]} is out of range (00-23)` };
  if (minute > 59) return { error: `minute ${m[5]} is out of range (00-59)` };
  // 60 (a leap second) is RFC 3339, but JavaScript's Date refuses it and no storage service sends it.
  if (second > 59) return { error: `second ${m[6]} is out of range (00-59)` };
  if (m[9] !== undefined) {
    // PostgreSQL refuses offsets beyond 15:59; real time zones span -12:00 to +14:00.
    if (Number(m[10]) > 15 || Number(m[11]) > 59) return { error: `time zone offset ${m[9]}${m[10]}:${m[11]} is out of range (at most ±15:59)` };
  }
  const zone = m[8] !== undefined ? 'Z' : `${m[9]}${m[10]}:${m[11]}`;
  return { value: `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}${m[7] ?? ''}${zone}` };
}

/** An RFC 3339 timestamp (see canonicalTimestamp), output in canonical form. */
export const timestamp = z.string().transform((s, ctx) => {
  const r = canonicalTimestamp(s);
  if ('value' in r) return r.value;
  ctx.addIssue({ code: 'custom', message: r.error });
  return z.NEVER;
});

/**
 * An object size in bytes: a non-negative safe integer (zod's `int()` stops at 2^53 - 1, about 9 PB,
 * far above any object and below bigint's limit), or the same as a string of digits (Event Grid).
 */
export const size = z.union([
  z.number().int().min(0),
  z
    .string()
    .regex(/^\d{1,18}$/)
    .transform(Number)
    .refine(Number.isSafeInteger, `must be at most ${Number.MAX_SAFE_INTEGER}`),
]);
