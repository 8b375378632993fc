/**
 * The S3 client of one connector, configured deliberately:
 *
 * - `maxAttempts: 1`: the SDK does not retry. Each try must pass through the integration's
 *   RequestLimiter (the SDK's own retries would bypass its per-second budget), throttling is retried by
 *   `withThrottleRetry` (Retry-After honoured, then `throttled`), and other transient failures are
 *   retried by the pipeline (in process, then graphile-worker). With the SDK's standard strategy on top
 *   (3 tries) every throttled call would be tried up to 3 x 6 = 18 times.
 * - Checksums `WHEN_REQUIRED`: the SDK's default since 3.729 adds CRC32 trailers (aws-chunked framing)
 *   that several S3-compatible stores reject or store inside the object (s3rver does). The connector
 *   uploads only small probe objects; reads are verified by length, copies by length and ETag.
 * - No credentials given: the SDK's default chain (environment, shared profile, web identity, container
 *   or instance role), resolved lazily at the first request.
 */
import { S3Client } from '@aws-sdk/client-s3';
import type { S3Credentials, S3Settings } from './settings.ts';

/** Client tuning that is not configuration (the limiter owns concurrency). */
export interface S3ClientOptions {
  /** Sockets kept per host: the limiter's in-flight limit, so requests never queue inside the agent. */
  maxSockets: number;
}

/** Connection setup longer than this is a failed try (ms). */
const CONNECT_TIMEOUT_MS = 10_000;
/**
 * A socket idle this long is dropped (ms). Generous: a read stream may sit idle while the scanner
 * applies backpressure on a large object.
 */
const SOCKET_IDLE_MS = 300_000;

/** The AWS SDK client settings of an integration (shared with its SQS event source). */
export function awsClientConfig(settings: Pick<S3Settings, 'region' | 'endpoint'>, credentials: S3Credentials | null) {
  return {
    region: settings.region,
    ...(settings.endpoint ? { endpoint: settings.endpoint } : {}),
    ...(credentials ? { credentials } : {}),
    maxAttempts: 1,
  };
}

/** Builds the S3 client of an integration. */
export function makeS3Client(settings: S3Settings, credentials: S3Credentials | null, opts: S3ClientOptions): S3Client {
  const agent = { keepAlive: true, maxSockets: Math.max(1, opts.maxSockets) };
  return new S3Client({
    ...awsClientConfig(settings, credentials),
    forcePathStyle: settings.path_style ?? settings.endpoint !== undefined,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: { connectionTimeout: CONNECT_TIMEOUT_MS, socketTimeout: SOCKET_IDLE_MS, httpAgent: agent, httpsAgent: agent },
  });
}
