/**
 * Every request of the connector goes through here: one slot of the integration's RequestLimiter per
 * try, throttling answers (503 ServerBusy, 503, 429) retried with backoff outside the slot (honouring
 * Retry-After), and a per-request timeout. A throttling answer that outlasts the retries surfaces as
 * ConnectorError('throttled'); any other error is thrown as the SDK raised it, for the caller to read
 * its status (404 -> already done, 412 -> changed since the scan) before mapping it with errors.ts.
 */
import type { Logger } from '../../log.ts';
import { withThrottleRetry, type RequestLimiter } from '../rate-limit.ts';
import { ConnectorError } from '../types.ts';
import { errorCodeOf, isThrottled, retryAfterMs, statusOf } from './errors.ts';

/** How throttling is retried (see `withThrottleRetry`). */
export interface ThrottleRetryTuning {
  /** Tries in all, the first included (default 6). */
  maxTries?: number;
  /** First pause (default 200 ms), doubled per try up to `maxDelayMs` (default 10 s). */
  baseDelayMs?: number;
  maxDelayMs?: number;
}

export interface CallsOptions {
  limiter: RequestLimiter;
  retry?: ThrottleRetryTuning;
  /** Abort a request that has not answered after this long (default 60 s; a download only until its headers). */
  requestTimeoutMs?: number;
  /** Called before each backoff pause (metrics, logs, tests). */
  onThrottle?(err: unknown, delayMs: number, tryNo: number): void;
  log?: Logger;
}

/** Runs SDK calls under the integration's limits. */
export class AzureCalls {
  readonly #limiter: RequestLimiter;
  readonly #retry: ThrottleRetryTuning;
  readonly #timeoutMs: number;
  readonly #onThrottle: CallsOptions['onThrottle'];
  readonly #log: Logger | undefined;
  readonly #closed = new AbortController();

  constructor(opts: CallsOptions) {
    this.#limiter = opts.limiter;
    this.#retry = opts.retry ?? {};
    this.#timeoutMs = opts.requestTimeoutMs ?? 60_000;
    this.#onThrottle = opts.onThrottle;
    this.#log = opts.log;
  }

  /** Aborted when the connector is closed: waits (copy polling) stop. */
  get closedSignal(): AbortSignal {
    return this.#closed.signal;
  }

  /** Aborts requests and waits in progress; later calls fail with `unavailable`. */
  close(): void {
    this.#closed.abort(new ConnectorError('unavailable', 'the Azure Blob connector was closed'));
  }

  /** One request (`fn` gets the abort signal to pass to the SDK), limited and retried while throttled. */
  run<T>(what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    return this.#retrying(what, () =>
      this.#limiter.run(() => {
        const signal = AbortSignal.any([this.#closed.signal, AbortSignal.timeout(this.#timeoutMs)]);
        return fn(signal);
      }),
    );
  }

  /**
   * A request whose response body streams after it returns: the limiter slot is held until the
   * stream closes (it counts as in flight while bytes flow). The caller must consume or destroy it.
   */
  runStreaming<T extends { stream: NodeJS.ReadableStream & { once(event: 'close', fn: () => void): unknown } }>(
    what: string,
    fn: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    return this.#retrying(
      what,
      () =>
        new Promise<T>((resolve, reject) => {
          this.#limiter
            .run(async () => {
              // The timeout covers the wait for the response headers only: a long download is not cut.
              const headers = new AbortController();
              const timer = setTimeout(() => headers.abort(new Error(`no answer within ${this.#timeoutMs} ms`)), this.#timeoutMs);
              let result: T;
              try {
                result = await fn(AbortSignal.any([this.#closed.signal, headers.signal]));
              } catch (err) {
                reject(err);
                return;
              } finally {
                clearTimeout(timer);
              }
              const closed = new Promise<void>((r) => result.stream.once('close', () => r()));
              resolve(result);
              await closed;
            })
            .catch(reject);
        }),
    );
  }

  #retrying<T>(what: string, attempt: () => Promise<T>): Promise<T> {
    if (this.#closed.signal.aborted) return Promise.reject(new ConnectorError('unavailable', `${what}: the Azure Blob connector was closed`));
    let tries = 0;
    return withThrottleRetry(
      () => {
        tries++;
        return attempt();
      },
      {
        isThrottled,
        retryAfterMs: (err) => retryAfterMs(err),
        maxTries: this.#retry.maxTries,
        baseDelayMs: this.#retry.baseDelayMs,
        maxDelayMs: this.#retry.maxDelayMs,
        onThrottle: (err, delayMs, tryNo) => {
          this.#log?.debug({ what, status: statusOf(err), code: errorCodeOf(err), delayMs, tryNo }, 'azure blob: throttled, backing off');
          this.#onThrottle?.(err, delayMs, tryNo);
        },
      },
    ).catch((err: unknown) => {
      if (!isThrottled(err)) throw err;
      const tag = [statusOf(err), errorCodeOf(err)].filter((x) => x !== undefined).join(' ');
      throw new ConnectorError('throttled', `${what}: the storage account kept throttling (${tag}) through ${tries} tries: retried later`, { cause: err });
    });
  }
}
