/**
 * Connector API limits, shared by every job of one integration in a process: at most `maxInFlight`
 * requests at once and `maxPerSecond` started per second (a token bucket with a burst of one second's
 * worth), and a retry loop for throttling answers (S3 `SlowDown`/503, Azure `ServerBusy`/503, 429) that
 * backs off exponentially with jitter, honouring a `Retry-After` the store sent. Storage APIs throttle
 * per account or per prefix, so the limit belongs to the integration, not to a job.
 */

export interface LimitOptions {
  /** Requests in flight at once (default 32). */
  maxInFlight?: number;
  /** Requests started per second (default 0 = unlimited). */
  maxPerSecond?: number;
  /** Clock, for tests. */
  now?: () => number;
}

export class RequestLimiter {
  readonly maxInFlight: number;
  readonly maxPerSecond: number;
  readonly #now: () => number;
  #inFlight = 0;
  #tokens: number;
  #refilledAt: number;
  readonly #waiters: (() => void)[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(opts: LimitOptions = {}) {
    this.maxInFlight = Math.max(1, Math.floor(opts.maxInFlight ?? 32));
    this.maxPerSecond = Math.max(0, opts.maxPerSecond ?? 0);
    this.#now = opts.now ?? (() => performance.now());
    this.#tokens = this.maxPerSecond;
    this.#refilledAt = this.#now();
  }

  /** Requests running now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Callers waiting for a slot or a token now. */
  get waiting(): number {
    return this.#waiters.length;
  }

  /** Runs `fn` once a slot and a token are free. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    await this.#acquire();
    try {
      return await fn();
    } finally {
      this.#inFlight--;
      this.#wake();
    }
  }

  #refill(): void {
    if (this.maxPerSecond === 0) return;
    const t = this.#now();
    this.#tokens = Math.min(this.maxPerSecond, this.#tokens + ((t - this.#refilledAt) / 1000) * this.maxPerSecond);
    this.#refilledAt = t;
  }

  #tryTake(): boolean {
    if (this.#inFlight >= this.maxInFlight) return false;
    if (this.maxPerSecond > 0) {
      this.#refill();
      if (this.#tokens < 1) return false;
      this.#tokens -= 1;
    }
    this.#inFlight++;
    return true;
  }

  #acquire(): Promise<void> {
    if (this.#waiters.length === 0 && this.#tryTake()) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.#waiters.push(resolve);
      this.#wake();
    });
  }

  /** Grants waiting callers in order while slots and tokens allow; re-arms a timer for the next token. */
  #wake(): void {
    while (this.#waiters.length > 0 && this.#tryTake()) this.#waiters.shift()!();
    if (this.#waiters.length > 0 && this.#inFlight < this.maxInFlight && this.maxPerSecond > 0 && !this.#timer) {
      const wait = Math.max(1, Math.ceil(((1 - this.#tokens) / this.maxPerSecond) * 1000));
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#wake();
      }, wait);
      this.#timer.unref?.();
    }
  }
}

export interface ThrottleRetryOptions {
  /** True when `err` is the store asking us to slow down. */
  isThrottled(err: unknown): boolean;
  /** A delay the store asked for (Retry-After), in ms, if any. */
  retryAfterMs?(err: unknown): number | undefined;
  /** Tries in all, the first included (default 6). */
  maxTries?: number;
  /** First pause (default 200 ms); doubled each time, up to `maxDelayMs` (default 10 s), with jitter. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Called before each pause (logging, tests). */
  onThrottle?(err: unknown, delayMs: number, tryNo: number): void;
  sleep?(ms: number): Promise<void>;
}

/**
 * Runs `fn`, retrying while the store throttles. After the last try the throttling error is thrown
 * as it is: the caller turns it into ConnectorError('throttled'), which the pipeline retries later
 * without counting it as the object's failure.
 */
export async function withThrottleRetry<T>(fn: () => Promise<T>, opts: ThrottleRetryOptions): Promise<T> {
  const maxTries = opts.maxTries ?? 6;
  const base = opts.baseDelayMs ?? 200;
  const cap = opts.maxDelayMs ?? 10_000;
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  for (let tryNo = 1; ; tryNo++) {
    try {
      return await fn();
    } catch (err) {
      if (tryNo >= maxTries || !opts.isThrottled(err)) throw err;
      const asked = opts.retryAfterMs?.(err);
      const backoff = Math.min(cap, base * 2 ** (tryNo - 1));
      const delay = Math.min(cap, asked ?? Math.round(backoff / 2 + Math.random() * (backoff / 2)));
      opts.onThrottle?.(err, delay, tryNo);
      await sleep(delay);
    }
  }
}
