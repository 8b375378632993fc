/**
 * Authentication of event intake requests, with the integration's event secret, in one of three forms:
 *
 * - Signed: `X-DSX-Timestamp: <unix seconds>` and `X-DSX-Signature: sha256=<hex HMAC-SHA256 of
 *   "<timestamp>.<body>">`. The secret never travels; a timestamp more than DSX_EVENT_MAX_SKEW_S
 *   (300 s) from the server's clock is refused, and the intake remembers each accepted signature for
 *   that long (dsx_private.event_signatures), so a captured request cannot be replayed.
 * - `Authorization: Bearer <secret>` (EventBridge API destinations) or `?token=<secret>` (SNS HTTPS
 *   subscriptions and Event Grid webhooks, which cannot add headers): the secret itself, for senders
 *   that cannot sign; over TLS only, and with no replay protection beyond event-id deduplication.
 *
 * A request that carries X-DSX-Signature is judged by its signature alone.
 */
import crypto from 'node:crypto';
import type http from 'node:http';
import type { EventSignature } from '../db/sql/monitor.ts';

/** A refused credential; the message says what was wrong and what to send (HTTP 401). */
export class IntakeAuthError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IntakeAuthError';
  }
}

/** How a request proved it knows the secret; a signature is remembered by the intake (replays refused). */
export type Credential = { by: 'secret' } | { by: 'signature'; signature: EventSignature };

const HOW =
  'send "X-DSX-Timestamp: <unix seconds>" with "X-DSX-Signature: sha256=<HMAC-SHA256 of \\"<timestamp>.<body>\\">", ' +
  'or "Authorization: Bearer <event secret>", or ?token=<event secret>';

function hmac(secret: string, timestamp: string, body: Buffer | string): Buffer {
  return crypto.createHmac('sha256', secret).update(`${timestamp}.`).update(body).digest();
}

/** The headers that sign `body` at `timestampS` (unix seconds): what a sender adds to its POST. */
export function signEventRequest(secret: string, body: Buffer | string, timestampS: number): { 'x-dsx-timestamp': string; 'x-dsx-signature': string } {
  const timestamp = String(Math.floor(timestampS));
  return { 'x-dsx-timestamp': timestamp, 'x-dsx-signature': `sha256=${hmac(secret, timestamp, body).toString('hex')}` };
}

/** Constant-time comparison of two strings (through their digests, so lengths may differ). */
function sameSecret(a: string, b: string): boolean {
  const da = crypto.createHash('sha256').update(a).digest();
  const db = crypto.createHash('sha256').update(b).digest();
  return crypto.timingSafeEqual(da, db);
}

function shown(header: string): string {
  const json = JSON.stringify(header);
  return json.length > 40 ? `${json.slice(0, 37)}..."` : json;
}

function signed(headers: http.IncomingHttpHeaders, body: Buffer, secret: string, nowMs: number, maxSkewS: number): Credential {
  const sig = headers['x-dsx-signature'];
  const ts = headers['x-dsx-timestamp'];
  if (ts === undefined) {
    throw new IntakeAuthError('invalid credentials: a signed request needs X-DSX-Timestamp: <unix seconds> beside X-DSX-Signature: sha256=<HMAC-SHA256 of "<timestamp>.<body>">');
  }
  // Twelve digits reach the year 33658; anything longer is no clock.
  if (typeof ts !== 'string' || !/^\d{1,12}$/.test(ts)) {
    const ms = typeof ts === 'string' && /^\d{13}$/.test(ts) ? ' (milliseconds? divide by 1000)' : '';
    throw new IntakeAuthError(`invalid credentials: X-DSX-Timestamp must be unix seconds (digits only), got ${shown(String(ts))}${ms}`);
  }
  const m = typeof sig === 'string' ? /^sha256=([0-9a-f]{64})$/i.exec(sig.trim()) : null;
  if (!m) throw new IntakeAuthError('invalid credentials: X-DSX-Signature must be one sha256=<64 hex digits>');
  const given = Buffer.from(m[1]!, 'hex');
  const expected = hmac(secret, ts, body);
  if (!crypto.timingSafeEqual(given, expected)) {
    throw new IntakeAuthError(`invalid credentials: X-DSX-Signature is not the HMAC-SHA256 of "<X-DSX-Timestamp>.<body>" keyed with the integration's event secret; ${HOW}`);
  }
  const signedAt = Number(ts);
  const skewS = nowMs / 1000 - signedAt;
  if (Math.abs(skewS) > maxSkewS) {
    const skew = Math.round(skewS);
    throw new IntakeAuthError(
      `stale request: X-DSX-Timestamp ${ts} is ${Math.abs(skew)} s ${skew > 0 ? 'behind' : 'ahead of'} the server's clock, beyond the ${maxSkewS} s ` +
        'allowed (DSX_EVENT_MAX_SKEW_S): sign each request when you send it, and keep the sender\'s clock in sync (NTP)',
    );
  }
  return { by: 'signature', signature: { digest: expected, signedAt, windowS: maxSkewS } };
}

/** How the request authenticates with `secret`; throws IntakeAuthError (401) saying why it does not. */
export function authenticate(
  req: http.IncomingMessage,
  url: URL,
  body: Buffer,
  secret: string,
  clock: { nowMs: number; maxSkewS: number },
): Credential {
  if (req.headers['x-dsx-signature'] !== undefined) return signed(req.headers, body, secret, clock.nowMs, clock.maxSkewS);
  const auth = req.headers.authorization;
  if (auth?.startsWith('Bearer ') && sameSecret(auth.slice(7).trim(), secret)) return { by: 'secret' };
  const token = url.searchParams.get('token');
  if (token !== null && sameSecret(token, secret)) return { by: 'secret' };
  throw new IntakeAuthError(`missing or invalid credentials: ${HOW}`);
}
