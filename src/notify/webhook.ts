/**
 * Signed webhook delivery. The body is JSON; `X-DSX-Signature: sha256=<hex>` is the HMAC-SHA256 of the
 * exact body bytes keyed with the channel secret, `X-DSX-Timestamp` the sending time (unix seconds) and
 * `X-DSX-Idempotency-Key` lets a receiver drop a repeated delivery.
 *
 * Delivery goes through `node:http`/`node:https` so that the socket connects where the SSRF guard
 * (`targets.ts`) says: to the vetted literal, or to the addresses its own lookup vetted, with TLS
 * verified against the URL's host name. Nothing the receiver sends back beyond its status code ends up
 * in an error: error messages become ledger details that every API viewer can read.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { planConnection, TargetRefused, type ConnectionPlan, type TargetPolicy } from './targets.ts';

/** Options of one delivery attempt. */
export interface WebhookDelivery {
  url: string;
  secret: string;
  body: unknown;
  idempotencyKey: string;
  /** Whole-attempt timeout (resolving, connecting, until the response's status line), default 10000 ms. */
  timeoutMs?: number;
  /** Which hosts and addresses the delivery may reach; default: any host, public addresses only. */
  target?: TargetPolicy;
}

/** A failed delivery; `retryable` tells whether the same delivery may succeed later. */
export class WebhookError extends Error {
  readonly retryable: boolean;
  /** HTTP status, when the receiver answered. */
  readonly status?: number;
  constructor(message: string, opts: { retryable: boolean; status?: number; cause?: unknown }) {
    super(message, { cause: opts.cause });
    this.name = 'WebhookError';
    this.retryable = opts.retryable;
    if (opts.status !== undefined) this.status = opts.status;
  }
}

const DEFAULT_TIMEOUT_MS = 10_000;
const PUBLIC_ONLY: TargetPolicy = { allowedHosts: [], allowPrivate: false };
const SIGNATURE = /^sha256=([0-9a-f]{64})$/i;

/** `sha256=<hex>` signature of `rawBody` under `secret`. */
export function signBody(secret: string, rawBody: string | Buffer): string {
  return `sha256=${createHmac('sha256', secret).update(rawBody).digest('hex')}`;
}

/** True when `header` is a valid `sha256=<hex>` signature of `rawBody` under `secret` (timing-safe). */
export function verifySignature(secret: string, rawBody: string | Buffer, header: string): boolean {
  const m = typeof header === 'string' ? SIGNATURE.exec(header.trim()) : null;
  if (!m) return false;
  const given = Buffer.from(m[1], 'hex');
  const expected = createHmac('sha256', secret).update(rawBody).digest();
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** True for statuses worth retrying: server errors, rate limiting, request timeout. */
function retryableStatus(status: number): boolean {
  return status >= 500 || status === 429 || status === 408;
}

/** Checks the URL and plans the connection; every refusal is a WebhookError. */
function prepare(rawUrl: string, policy: TargetPolicy): { url: URL; target: string; plan: ConnectionPlan } {
  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch (err) {
    // The URL itself is not repeated: its query string may carry a token.
    throw new WebhookError('the webhook URL is not a valid URL; set the channel to an http:// or https:// URL', { retryable: false, cause: err });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new WebhookError(`webhook URL must be http or https, got ${url.protocol}`, { retryable: false });
  }
  const target = `${url.origin}${url.pathname}`; // no query string or credentials in messages
  if (url.username || url.password) {
    throw new WebhookError(`webhook URL ${target} must not carry a user name or password; authenticate the receiver by the signature instead`, {
      retryable: false,
    });
  }
  try {
    return { url, target, plan: planConnection(url, policy) };
  } catch (err) {
    if (err instanceof TargetRefused) throw new WebhookError(err.message, { retryable: err.retryable, cause: err });
    throw err;
  }
}

/**
 * POSTs `body` as signed JSON to a target the policy allows. Resolves on a 2xx answer; throws
 * WebhookError otherwise (retryable for 5xx, 429, 408, network errors, timeouts and failed name
 * resolution; not for other statuses, a bad URL or a refused target). Redirects are not followed: a
 * webhook URL must answer itself. The response body is never read.
 */
export async function deliverWebhook(opts: WebhookDelivery): Promise<{ status: number }> {
  const { url, target, plan } = prepare(opts.url, opts.target ?? PUBLIC_ONLY);
  const raw = Buffer.from(JSON.stringify(opts.body) ?? 'null', 'utf8');
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const secure = url.protocol === 'https:';
  const options: https.RequestOptions = {
    method: 'POST',
    host: plan.host,
    port: url.port === '' ? (secure ? 443 : 80) : Number(url.port),
    path: `${url.pathname}${url.search}`,
    lookup: plan.lookup,
    agent: false, // a fresh socket per delivery: its one lookup, vetted under this delivery's policy, is the only one
    signal: AbortSignal.timeout(timeoutMs),
    headers: {
      Host: url.host,
      'Content-Type': 'application/json',
      'Content-Length': String(raw.length),
      'User-Agent': 'dsx-connect-webhook',
      'X-DSX-Signature': signBody(opts.secret, raw),
      'X-DSX-Timestamp': String(Math.floor(Date.now() / 1000)),
      'X-DSX-Idempotency-Key': opts.idempotencyKey,
    },
  };
  if (plan.servername !== undefined) options.servername = plan.servername;

  return new Promise((resolve, reject) => {
    const req = (secure ? https : http).request(options, (res) => {
      const status = res.statusCode ?? 0;
      res.destroy(); // the answer counts; its body (the receiver's text) is neither read nor kept
      if (status >= 200 && status < 300) resolve({ status });
      else reject(statusError(target, status));
    });
    req.on('error', (err) => reject(networkError(err, target, timeoutMs)));
    req.end(raw);
  });
}

/** The error for a non-2xx answer: the status and its standard reason phrase, never the receiver's own. */
function statusError(target: string, status: number): WebhookError {
  const phrase = http.STATUS_CODES[status];
  const redirect = status >= 300 && status < 400 ? '; redirects are not followed: set the channel to the final URL' : '';
  return new WebhookError(`webhook ${target} answered HTTP ${status}${phrase ? ` ${phrase}` : ''}${redirect}`, {
    retryable: retryableStatus(status),
    status,
  });
}

function networkError(err: unknown, target: string, timeoutMs: number): WebhookError {
  if (err instanceof TargetRefused) return new WebhookError(err.message, { retryable: err.retryable, cause: err });
  const name = (err as { name?: unknown } | null)?.name;
  if (name === 'TimeoutError' || name === 'AbortError') {
    return new WebhookError(`webhook ${target} did not answer within ${timeoutMs} ms`, { retryable: true, cause: err });
  }
  // The code only (ECONNREFUSED, ERR_TLS_CERT_ALTNAME_INVALID, ...): messages can quote the peer's certificate.
  const code = (err as { code?: unknown } | null)?.code;
  const why = typeof code === 'string' && /^[A-Z0-9_]{1,64}$/.test(code) ? code : 'network error';
  return new WebhookError(`webhook ${target} could not be reached: ${why}`, { retryable: true, cause: err });
}
