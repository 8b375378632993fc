/** The error a CLI command reports as one line (and a hint) instead of a stack trace. */

/** A user-facing error: printed as `error: <message>` (and `hint: <hint>`), without a stack trace, exit code 1. */
export class UsageError extends Error {
  /** What to do about it, printed on a line of its own. */
  readonly hint: string | undefined;
  constructor(message: string, opts: { hint?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.hint = opts.hint;
  }
}
