/**
 * S3 errors -> ConnectorError kinds, on the error's `name` (the S3 error code) and on its HTTP status
 * alike: HEAD answers carry no body, so a missing key is a bare `NotFound`/404 and a denied HEAD a bare
 * 403 with the name `Unknown`. Network errors from the HTTP handler carry a Node `code` instead.
 */
import { ConnectorError, type ConnectorErrorKind } from '../types.ts';

/** What a request was about, for messages that say what failed and what to do. */
export interface RequestTarget {
  /** The S3 operation, e.g. `GetObject`. */
  op: string;
  bucket: string;
  key?: string;
  /** The IAM action the operation needs, e.g. `s3:GetObject` (named in permission errors). */
  action?: string;
}

/** Codes of S3 (and AWS-wide) throttling answers. */
const THROTTLE_NAMES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'ThrottledException',
  'RequestThrottled',
  'RequestThrottledException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'ServiceUnavailable',
  'BandwidthLimitExceeded',
]);

const CREDENTIAL_NAMES: Record<string, string> = {
  InvalidAccessKeyId: 'the access key id is not known to the store',
  SignatureDoesNotMatch: 'the secret access key does not match the access key id',
  ExpiredToken: 'the session token has expired',
  InvalidToken: 'the session token is malformed or invalid',
  TokenRefreshRequired: 'the session token must be refreshed',
  InvalidClientTokenId: 'the access key id or session token is not valid',
  CredentialsProviderError: 'no AWS credentials were found (environment, shared profile, web identity, instance role)',
};

/** Network errors that mean the endpoint's host name does not resolve: retrying will not help. */
const UNRESOLVABLE = new Set(['ENOTFOUND']);
/** Network errors worth retrying later. */
const NETWORK_TRANSIENT = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED', 'UND_ERR_SOCKET']);

interface SdkErrorShape {
  name?: unknown;
  code?: unknown;
  message?: unknown;
  $metadata?: { httpStatusCode?: number };
  $response?: { headers?: Record<string, string | undefined> };
  hostname?: unknown;
}

function shape(err: unknown): SdkErrorShape {
  return typeof err === 'object' && err !== null ? (err as SdkErrorShape) : {};
}

/** The S3 error code (or the Node error code for network errors), if any. */
export function errorName(err: unknown): string {
  const e = shape(err);
  return typeof e.name === 'string' && e.name !== 'Error' ? e.name : typeof e.code === 'string' ? e.code : '';
}

/** The HTTP status of an S3 answer, if there was one. */
export function httpStatus(err: unknown): number | undefined {
  return shape(err).$metadata?.httpStatusCode;
}

/** True when the store asked us to slow down (503 SlowDown, any 503, 429, a throttling code). */
export function isThrottled(err: unknown): boolean {
  if (err instanceof ConnectorError) return false;
  const status = httpStatus(err);
  return status === 503 || status === 429 || THROTTLE_NAMES.has(errorName(err));
}

/** The pause the store asked for with `Retry-After` (seconds or an HTTP date), in ms. */
export function retryAfterMs(err: unknown): number | undefined {
  const raw = shape(err).$response?.headers?.['retry-after'];
  if (typeof raw !== 'string' || raw.trim() === '') return undefined;
  const seconds = Number(raw);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.round(seconds * 1000);
  const at = Date.parse(raw);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** True for a missing object or version (`NoSuchKey`, `NoSuchVersion`, a bare 404 of a HEAD). */
export function isNotFound(err: unknown): boolean {
  const name = errorName(err);
  if (name === 'NoSuchBucket') return false;
  return name === 'NoSuchKey' || name === 'NotFound' || name === 'NoSuchVersion' || httpStatus(err) === 404;
}

/** True for a failed condition (If-Match, If-None-Match, CopySourceIfMatch): 412 PreconditionFailed. */
export function isPreconditionFailed(err: unknown): boolean {
  return errorName(err) === 'PreconditionFailed' || httpStatus(err) === 412;
}

/** True when the store does not implement what was asked (501 NotImplemented). */
export function isNotImplemented(err: unknown): boolean {
  return errorName(err) === 'NotImplemented' || httpStatus(err) === 501;
}

function where(t: RequestTarget): string {
  return t.key === undefined ? `s3://${t.bucket}` : `s3://${t.bucket}/${t.key}`;
}

function messageOf(err: unknown): string {
  const m = shape(err).message;
  return typeof m === 'string' && m !== '' && m !== 'UnknownError' ? m : 'no message';
}

/** Maps any error of an S3 request to a ConnectorError with a message that says what to do. */
export function toConnectorError(err: unknown, t: RequestTarget): ConnectorError {
  if (err instanceof ConnectorError) return err;
  const name = errorName(err);
  const status = httpStatus(err);
  const at = `${t.op} ${where(t)}`;
  const make = (kind: ConnectorErrorKind, text: string) => new ConnectorError(kind, `${at}: ${text}`, { cause: err });

  if (isThrottled(err)) {
    return make('throttled', `the store is throttling requests (${name || status}) and kept doing so after backing off; retry later or lower the integration's limits`);
  }
  const credentials = CREDENTIAL_NAMES[name];
  if (credentials) return make('configuration', `${credentials}: fix the integration's credentials`);
  if (name === 'AuthorizationHeaderMalformed') {
    return make('configuration', `the store refused the request's signature scope (${messageOf(err)}): check the integration's region`);
  }
  if (name === 'NoSuchBucket') {
    return make('configuration', `bucket ${t.bucket} does not exist: check the integration's bucket, region and endpoint`);
  }
  if (name === 'InvalidBucketName') {
    return make('configuration', `${t.bucket} is not a valid bucket name for this store: fix the integration's bucket`);
  }
  if (name === 'PermanentRedirect' || name === 'IllegalLocationConstraintException' || status === 301) {
    return make('configuration', `bucket ${t.bucket} is in another region or behind another endpoint: set the integration's region`);
  }
  if (UNRESOLVABLE.has(name)) {
    const host = typeof shape(err).hostname === 'string' ? ` ${String(shape(err).hostname)}` : '';
    return make('configuration', `the endpoint host${host} cannot be resolved: fix the integration's endpoint (or region)`);
  }
  if (name === 'AccessDenied' || name === 'AllAccessDisabled' || status === 403) {
    const needs = t.action ? ` (needs ${t.action})` : '';
    return make('permission', `access denied${needs}: grant it to the integration's credentials, or check the bucket policy`);
  }
  if (isNotFound(err)) return make('not_found', 'the object does not exist');
  if (isNotImplemented(err)) return make('unavailable', `the store does not implement this (${messageOf(err)})`);
  if (NETWORK_TRANSIENT.has(name) || name === 'TimeoutError' || name === 'RequestTimeout' || name === 'AbortError') {
    return make('transient', `the store could not be reached or dropped the connection (${name}: ${messageOf(err)})`);
  }
  if (name === 'RequestTimeTooSkewed') {
    // The SDK corrects its clock offset from this very answer, so the next try is signed right.
    return make('transient', 'the local clock differs from the store\'s by more than 15 minutes (corrected for the next try)');
  }
  if (name === 'ConditionalRequestConflict' || status === 409) {
    return make('transient', 'a concurrent write to the same key conflicted; retry');
  }
  if (status !== undefined && status >= 500) return make('transient', `the store failed (${status} ${name}: ${messageOf(err)})`);
  if (status !== undefined && status >= 400) return make('invalid', `the store refused the request (${status} ${name}: ${messageOf(err)})`);
  return make('transient', `failed (${name || 'error'}: ${messageOf(err)})`);
}
