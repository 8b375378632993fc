/**
 * Every S3 request of a connector goes through here: one slot of the integration's RequestLimiter per
 * try (in flight and per second), throttling answers retried with backoff outside the slot, and errors
 * mapped to ConnectorError. A streamed GetObject keeps its slot until its body is finished or destroyed,
 * so "in flight" counts the transfers that really hold a connection.
 */
import type { Readable } from 'node:stream';
import { finished } from 'node:stream';
import type { GetObjectCommand, GetObjectCommandOutput, S3Client } from '@aws-sdk/client-s3';
import type { Logger } from '../../log.ts';
import { withThrottleRetry, type RequestLimiter, type ThrottleRetryOptions } from '../rate-limit.ts';
import { errorName, httpStatus, isThrottled, retryAfterMs, toConnectorError, type RequestTarget } from './errors.ts';

/** Tuning of the throttling retry (defaults: `withThrottleRetry`'s 6 tries from 200 ms up to 10 s). */
export type ThrottleTuning = Pick<ThrottleRetryOptions, 'maxTries' | 'baseDelayMs' | 'maxDelayMs' | 'sleep' | 'onThrottle'>;

/** One try of a request: `(client) => client.send(new XCommand(...))` (typed by the SDK's own overloads). */
export type Request<O> = (client: S3Client) => Promise<O>;

/** The request runner of one connector. */
export class S3Requests {
  readonly client: S3Client;
  readonly limiter: RequestLimiter;
  readonly #log: Logger | undefined;
  readonly #throttle: ThrottleRetryOptions;

  constructor(client: S3Client, limiter: RequestLimiter, log?: Logger, throttle: ThrottleTuning = {}) {
    this.client = client;
    this.limiter = limiter;
    this.#log = log;
    this.#throttle = {
      ...throttle,
      isThrottled,
      retryAfterMs,
      onThrottle: (err, delayMs, tryNo) => {
        this.#log?.warn({ s3_error: errorName(err), status: httpStatus(err), delay_ms: delayMs, try_no: tryNo }, 'S3 is throttling: backing off');
        throttle.onThrottle?.(err, delayMs, tryNo);
      },
    };
  }

  /** Runs a request (limited, throttling retried); failures are the raw SDK errors. */
  run<O>(request: Request<O>): Promise<O> {
    return withThrottleRetry(() => this.limiter.run(() => request(this.client)), this.#throttle);
  }

  /** Like `run`, with failures mapped to ConnectorError for `target`. */
  async send<O>(request: Request<O>, target: RequestTarget): Promise<O> {
    try {
      return await this.run(request);
    } catch (err) {
      throw toConnectorError(err, target);
    }
  }

  /**
   * Sends a GetObject and resolves once its headers arrived; the limiter slot is held until the body
   * stream ends, fails or is destroyed (callers must consume or destroy it). Raw SDK errors on failure.
   */
  runStream(command: GetObjectCommand): Promise<GetObjectCommandOutput> {
    return withThrottleRetry(
      () =>
        new Promise<GetObjectCommandOutput>((resolve, reject) => {
          void this.limiter.run(async () => {
            let out: GetObjectCommandOutput;
            try {
              out = await this.client.send(command);
            } catch (err) {
              reject(err);
              return;
            }
            resolve(out);
            const body = out.Body as Readable | undefined;
            if (body && typeof body.pipe === 'function') await new Promise<void>((done) => finished(body, () => done()));
          });
        }),
      this.#throttle,
    );
  }
}
