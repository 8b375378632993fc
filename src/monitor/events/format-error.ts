/** The one error every event parser throws for a body it refuses, and the zod glue that produces it. */
import type { z } from 'zod';

/** A body that is not one of the accepted forms, or carries an invalid event; the message says why. */
export class EventFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EventFormatError';
  }
}

/** Most events one request may carry. */
export const MAX_EVENTS_PER_REQUEST = 10_000;

/** Refuses a request carrying more than MAX_EVENTS_PER_REQUEST events. */
export function checkCount(n: number): void {
  if (n > MAX_EVENTS_PER_REQUEST) throw new EventFormatError(`too many events (${n}; at most ${MAX_EVENTS_PER_REQUEST} per request)`);
}

function describe(error: z.ZodError, where: string): string {
  const issue = error.issues[0]!;
  const path = [where, ...issue.path.map(String)].filter(Boolean).join('.');
  return `${path || '(body)'}: ${issue.message}`;
}

/** `schema`'s output for `value`, or EventFormatError naming the first bad field below `where`. */
export function parseWith<T extends z.ZodType>(schema: T, value: unknown, where: string): z.infer<T> {
  const r = schema.safeParse(value);
  if (!r.success) throw new EventFormatError(`invalid event at ${describe(r.error, where)}`);
  return r.data;
}

/** A value for an error message: JSON, cut to 80 characters (a field may hold a megabyte). */
export function shown(value: string): string {
  const json = JSON.stringify(value);
  return json.length > 80 ? `${json.slice(0, 77)}..."` : json;
}
