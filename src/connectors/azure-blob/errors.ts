/**
 * Maps Azure Storage errors (the SDK's RestError, network errors, @azure/identity errors) to
 * ConnectorError kinds, with one-line messages that say what to fix.
 *
 * | answer | kind |
 * |---|---|
 * | 404 BlobNotFound | not_found |
 * | 404 ContainerNotFound / QueueNotFound | configuration |
 * | 403 AuthorizationPermissionMismatch (and the other Authorization*Mismatch codes) | permission |
 * | 403 AuthenticationFailed, AuthorizationFailure (azurite's answer to a bad key; Azure's to a firewall), InvalidAuthenticationInfo, NoAuthenticationInformation, KeyBasedAuthenticationNotPermitted | configuration |
 * | host does not resolve (ENOTFOUND) | configuration |
 * | 503 ServerBusy, 503, 429 | throttled (after the retries of calls.ts) |
 * | connection refused/reset/timed out, 5xx, timeouts | transient |
 * | other 4xx (400 InvalidMetadata, 409 BlobArchived, ...) | invalid |
 */
import { ConnectorError, type ConnectorErrorKind } from '../types.ts';

/** What a failed call was about, for the message. */
export interface ErrorContext {
  /** The operation in words: `reading "a b.txt"`, `listing container "uploads"`. */
  what: string;
  /** The account URL (no query string). */
  account: string;
  /** The container the call addressed. */
  container?: string;
  /** The permission the call needs, for a 403 (`read`, `write`, `delete`, `list`, `tag`). */
  need?: string;
}

/** HTTP status of an SDK error, if it has one. */
export function statusOf(err: unknown): number | undefined {
  const s = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof s === 'number' ? s : undefined;
}

/** Azure's error code (`BlobNotFound`, `ServerBusy`, ...) or the network error code (`ECONNREFUSED`). */
export function errorCodeOf(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const details = (err as { details?: { errorCode?: unknown } }).details;
  if (details && typeof details.errorCode === 'string') return details.errorCode;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

/** True when the store asks us to slow down: 503 (ServerBusy and others) or 429. */
export function isThrottled(err: unknown): boolean {
  const s = statusOf(err);
  return s === 503 || s === 429;
}

/** The delay a throttling answer asked for (Retry-After in seconds or as an HTTP date), in ms. */
export function retryAfterMs(err: unknown, now = Date.now()): number | undefined {
  const headers = (err as { response?: { headers?: { get?(name: string): string | undefined } } } | null)?.response?.headers;
  const value = typeof headers?.get === 'function' ? headers.get('retry-after') : undefined;
  if (!value) return undefined;
  if (/^\d+(\.\d+)?$/.test(value.trim())) return Math.round(Number(value) * 1000);
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** The first line of an error's message (Azure appends RequestId and Time on further lines). */
export function firstLine(err: unknown): string {
  const m = err instanceof Error ? err.message : String(err);
  return m.split('\n')[0]!.trim();
}

const PERMISSION_CODES = new Set([
  'AuthorizationPermissionMismatch',
  'AuthorizationResourceTypeMismatch',
  'AuthorizationServiceMismatch',
  'AuthorizationProtocolMismatch',
  'AuthorizationSourceIPMismatch',
  'InsufficientAccountPermissions',
]);
const AUTHENTICATION_CODES = new Set([
  'AuthenticationFailed',
  'AuthorizationFailure',
  'InvalidAuthenticationInfo',
  'NoAuthenticationInformation',
  'KeyBasedAuthenticationNotPermitted',
]);
const TRANSIENT_NETWORK = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ECONNABORTED', 'REQUEST_SEND_ERROR']);

function make(kind: ConnectorErrorKind, message: string, cause: unknown): ConnectorError {
  return new ConnectorError(kind, message, { cause });
}

/** Maps any error of an Azure call to a ConnectorError (a ConnectorError is returned unchanged). */
export function toConnectorError(err: unknown, ctx: ErrorContext): ConnectorError {
  if (err instanceof ConnectorError) return err;
  const status = statusOf(err);
  const code = errorCodeOf(err);
  const tag = [status, code].filter((x) => x !== undefined).join(' ');
  const where = ctx.container !== undefined ? `container "${ctx.container}" of ${ctx.account}` : ctx.account;
  const name = (err as { name?: unknown } | null)?.name;

  if (name === 'CredentialUnavailableError' || name === 'AuthenticationError' || name === 'AggregateAuthenticationError') {
    return make('configuration', `${ctx.what}: no usable Azure identity (${firstLine(err)}): give the integration credentials, or run it with a managed identity / workload identity / az login`, err);
  }
  if (name === 'AbortError' || code === 'ABORT_ERR') {
    return make('transient', `${ctx.what}: ${ctx.account} did not answer in time: retried later`, err);
  }
  if (code === 'ENOTFOUND') {
    const host = safeHost(ctx.account);
    return make('configuration', `${ctx.what}: account host ${host} does not resolve: correct settings.account_url (or the connection string's BlobEndpoint)`, err);
  }
  if (status === undefined) {
    if (code !== undefined && TRANSIENT_NETWORK.has(code)) return make('transient', `${ctx.what}: cannot reach ${ctx.account} (${code}): retried later`, err);
    return make('transient', `${ctx.what}: ${firstLine(err)}`, err);
  }
  if (status === 404) {
    if (code === 'ContainerNotFound') {
      return make('configuration', `${ctx.what}: container "${ctx.container ?? '?'}" does not exist in ${ctx.account}: create it or correct settings.container / quarantine_container`, err);
    }
    if (code === 'QueueNotFound') return make('configuration', `${ctx.what}: the queue does not exist in ${ctx.account}: create it or correct settings.event_queue_url`, err);
    return make('not_found', `${ctx.what}: does not exist (${tag})`, err);
  }
  if (status === 403) {
    if (code !== undefined && PERMISSION_CODES.has(code)) {
      const need = ctx.need ? ` ${ctx.need}` : '';
      return make('permission', `${ctx.what}: the credentials lack${need} permission on ${where} (${tag}): grant it (see "Azure Blob: permissions" in the README)`, err);
    }
    if (code !== undefined && AUTHENTICATION_CODES.has(code)) {
      return make('configuration', `${ctx.what}: ${ctx.account} refused the credentials (${tag}): check the account key or SAS token (expired? another account?) and the account's network rules`, err);
    }
    return make('permission', `${ctx.what}: forbidden on ${where} (${tag}: ${firstLine(err)})`, err);
  }
  if (status === 401) {
    return make('configuration', `${ctx.what}: ${ctx.account} refused the credentials (${tag}): check the integration's credentials`, err);
  }
  if (status === 503 || status === 429) {
    return make('throttled', `${ctx.what}: ${ctx.account} is throttling requests (${tag}): retried later`, err);
  }
  if (status >= 500) return make('transient', `${ctx.what}: ${ctx.account} failed (${tag}): retried later`, err);
  if (status === 409 && code === 'BlobArchived') {
    return make('invalid', `${ctx.what}: the blob is in the Archive tier (${tag}): rehydrate it to a hot or cool tier to read it`, err);
  }
  return make('invalid', `${ctx.what}: refused (${tag}: ${firstLine(err)})`, err);
}

function safeHost(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}
