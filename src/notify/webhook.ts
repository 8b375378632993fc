/**
 * Signed webhook delivery. The body is JSON; `X-DSX-Signature: sha256=<hex>` is the HMAC-SHA256 of the
 * exact body bytes keyed with the channel secret, `X-DSX-Timestamp` the sending time (unix seconds) and
 * `X-DSX-Idempotency-Key` lets a receiver drop a repeated delivery.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

/** Options of one delivery attempt. */
export interface WebhookDelivery {
  url: string;
  secret: string;
  body: unknown;
  idempotencyKey: string;
  /** Whole-attempt timeout (connect, headers and reading the response), default 10000 ms. */
  timeoutMs?: number;
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
const SNIPPET_BYTES = 512;
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

/**
 * POSTs `body` as signed JSON. Resolves on a 2xx answer; throws WebhookError otherwise (retryable for
 * 5xx, 429, 408, network errors and timeouts; not for other statuses or a bad URL). Redirects are not
 * followed: a webhook URL must answer itself.
 */
export async function deliverWebhook(opts: WebhookDelivery): Promise<{ status: number }> {
  let url: URL;
  try {
    url = new URL(opts.url);
  } catch (err) {
    throw new WebhookError(`invalid webhook URL ${JSON.stringify(opts.url)}`, { retryable: false, cause: err });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new WebhookError(`webhook URL must be http or https, got ${url.protocol}`, { retryable: false });
  }
  const raw = Buffer.from(JSON.stringify(opts.body) ?? 'null', 'utf8');
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const signal = AbortSignal.timeout(timeoutMs);
  const target = `${url.origin}${url.pathname}`; // no query string in messages: it may carry a token

  let res: Response;
  try {
    res = await fetch(url, {
      method: 'POST',
      redirect: 'manual',
      signal,
      body: raw,
      headers: {
        'Content-Type': 'application/json',
        'User-Agent': 'dsx-connect-webhook',
        'X-DSX-Signature': signBody(opts.secret, raw),
        'X-DSX-Timestamp': String(Math.floor(Date.now() / 1000)),
        'X-DSX-Idempotency-Key': opts.idempotencyKey,
      },
    });
  } catch (err) {
    throw networkError(err, target, timeoutMs);
  }

  let snippet: string;
  try {
    snippet = await readSnippet(res);
  } catch (err) {
    if (res.ok) return { status: res.status }; // the answer counts; its body does not
    throw networkError(err, target, timeoutMs);
  }
  if (res.ok) return { status: res.status };
  const detail = snippet ? `: ${snippet}` : '';
  throw new WebhookError(`webhook ${target} answered HTTP ${res.status}${detail}`, {
    retryable: retryableStatus(res.status),
    status: res.status,
  });
}

function networkError(err: unknown, target: string, timeoutMs: number): WebhookError {
  const name = (err as { name?: string } | null)?.name;
  if (name === 'TimeoutError' || name === 'AbortError') {
    return new WebhookError(`webhook ${target} did not answer within ${timeoutMs} ms`, { retryable: true, cause: err });
  }
  const cause = (err as { cause?: { code?: string; message?: string } } | null)?.cause;
  const why = cause?.code ?? cause?.message ?? (err instanceof Error ? err.message : String(err));
  return new WebhookError(`webhook ${target} could not be reached: ${why}`, { retryable: true, cause: err });
}

/** The first bytes of the response body as text (for error messages); the rest is discarded. */
async function readSnippet(res: Response): Promise<string> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    while (total < SNIPPET_BYTES) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      total += value.byteLength;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return Buffer.concat(chunks).subarray(0, SNIPPET_BYTES).toString('utf8').replace(/\s+/g, ' ').trim();
}
