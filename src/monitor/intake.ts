/**
 * The event intake: `POST /events/:integrationId` on the API server. A request is authenticated with
 * the integration's own event secret (dsx-connect integration event-secret NAME), in one of three ways,
 * to suit what each sender can do:
 *   - `Authorization: Bearer <secret>` (EventBridge API destinations, the generic form),
 *   - `X-DSX-Signature: sha256=<hex HMAC-SHA256 of the raw body keyed with the secret>`,
 *   - `?token=<secret>` in the URL (SNS HTTPS subscriptions and Event Grid webhooks cannot add headers).
 * The body is read up to DSX_EVENT_MAX_BYTES (413 beyond), parsed (400 for anything malformed, nothing
 * recorded), and its events recorded with their MonitorEventIngestJob in one transaction before the
 * 202 answer. Event Grid's validation handshakes (the validation event, and the CloudEvents OPTIONS
 * request) and SNS subscription confirmations are answered here.
 */
import crypto from 'node:crypto';
import type http from 'node:http';
import type pg from 'pg';
import { eventSecretGet, monitorEventsAccept } from '../db/sql/monitor.ts';
import type { Logger } from '../log.ts';
import { verifySignature } from '../notify/webhook.ts';
import { EventFormatError, parseEventBody } from './events/index.ts';

export interface IntakeOptions {
  pool: pg.Pool;
  log: Logger;
  maxBytes: number;
}

class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

function send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
}

function readBody(req: http.IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) {
    return Promise.reject(new HttpError(413, `request body of ${declared} bytes exceeds the limit of ${maxBytes} bytes (DSX_EVENT_MAX_BYTES)`));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > maxBytes) {
        reject(new HttpError(413, `request body exceeds the limit of ${maxBytes} bytes (DSX_EVENT_MAX_BYTES)`));
        req.resume();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** Constant-time comparison of two strings (through their digests, so lengths may differ). */
function sameSecret(a: string, b: string): boolean {
  const da = crypto.createHash('sha256').update(a).digest();
  const db = crypto.createHash('sha256').update(b).digest();
  return crypto.timingSafeEqual(da, db);
}

function authenticated(req: http.IncomingMessage, url: URL, body: Buffer, secret: string): boolean {
  const auth = req.headers.authorization;
  if (auth?.startsWith('Bearer ') && sameSecret(auth.slice(7).trim(), secret)) return true;
  const sig = req.headers['x-dsx-signature'];
  // The same `sha256=<hex HMAC of the body>` scheme as our outgoing webhooks.
  if (typeof sig === 'string' && verifySignature(secret, body, sig)) return true;
  const token = url.searchParams.get('token');
  return token !== null && sameSecret(token, secret);
}

/** SQLSTATE class 22, data exception: a value PostgreSQL refuses, whenever it is sent again. */
const DATA_EXCEPTION_CLASS = '22';

const SNS_HOST = /^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$/;

/** Handles one request to /events/...; `rest` is the path after /events/. */
export function createEventIntake(opts: IntakeOptions) {
  const { pool, log } = opts;
  return async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const m = /^\/events\/([^/]+)\/?$/.exec(url.pathname);
      if (!m) throw new HttpError(404, 'expected /events/<integration id>');
      if (req.method !== 'POST' && req.method !== 'OPTIONS') {
        throw new HttpError(405, `method ${req.method} not allowed: POST events to /events/<integration id>`);
      }
      if (!/^[1-9]\d{0,17}$/.test(m[1]!)) throw new HttpError(404, `unknown integration ${JSON.stringify(m[1])}: expected its numeric id`);
      const integrationId = Number(m[1]);
      const body = req.method === 'POST' ? await readBody(req, opts.maxBytes) : Buffer.alloc(0);
      const secret = await eventSecretGet(pool, integrationId);
      if (secret === undefined) throw new HttpError(404, `unknown integration id ${integrationId}`);
      if (secret === null) {
        throw new HttpError(403, `integration ${integrationId} has no event secret yet; create one with: dsx-connect integration event-secret <name>`);
      }
      if (!authenticated(req, url, body, secret)) {
        throw new HttpError(401, 'missing or invalid credentials: send "Authorization: Bearer <event secret>", "X-DSX-Signature: sha256=<HMAC-SHA256 of the body>", or ?token=<event secret>');
      }
      if (req.method === 'OPTIONS') {
        // CloudEvents webhook validation (Event Grid with the CloudEvents schema).
        const origin = req.headers['webhook-request-origin'];
        res.writeHead(200, typeof origin === 'string' ? { 'webhook-allowed-origin': origin, 'webhook-allowed-rate': '*' } : {}).end();
        return;
      }
      let json: unknown;
      try {
        json = JSON.parse(body.toString('utf8'));
      } catch (err) {
        throw new HttpError(400, `the body is not valid JSON: ${(err as Error).message}`);
      }
      let parsed;
      try {
        parsed = parseEventBody(json);
      } catch (err) {
        if (err instanceof EventFormatError) throw new HttpError(400, err.message);
        throw err;
      }
      switch (parsed.kind) {
        case 'eventgrid-validation':
          send(res, 200, { validationResponse: parsed.validationCode });
          return;
        case 's3-test':
          send(res, 200, { accepted: 0, note: 's3:TestEvent received' });
          return;
        case 'sns-subscription': {
          await pool.query(`select dsx_private.audit('sns', $1, null, null, null, $2::jsonb)`, [
            parsed.type === 'SubscriptionConfirmation' ? 'monitor.sns_subscription_confirmation' : 'monitor.sns_unsubscribe_confirmation',
            JSON.stringify({ integration_id: integrationId, topic_arn: parsed.topicArn, subscribe_url: parsed.subscribeUrl }),
          ]);
          let confirming = false;
          if (parsed.type === 'SubscriptionConfirmation' && parsed.subscribeUrl) {
            const target = new URL(parsed.subscribeUrl);
            if (target.protocol === 'https:' && SNS_HOST.test(target.hostname)) {
              confirming = true;
              fetch(target, { signal: AbortSignal.timeout(10_000) }).then(
                (r) => log.info({ integrationId, status: r.status, topic: parsed.topicArn }, 'SNS subscription confirmed'),
                (err: Error) => log.warn({ integrationId, err: err.message, topic: parsed.topicArn }, 'SNS subscription confirmation failed; confirm it from the audit log URL'),
              );
            }
          }
          send(res, 200, { received: parsed.type, confirming });
          return;
        }
        case 'events': {
          if (parsed.events.length === 0) {
            send(res, 200, { accepted: 0, duplicates: 0, skipped: parsed.skipped, eventIds: [] });
            return;
          }
          const r = await monitorEventsAccept(pool, integrationId, parsed.source, parsed.events);
          send(res, 202, { accepted: r.accepted, duplicates: r.duplicates, skipped: parsed.skipped, eventIds: r.event_ids });
          return;
        }
      }
    } catch (err) {
      if (err instanceof HttpError) {
        send(res, err.status, { error: err.message });
        return;
      }
      const message = (err as Error).message;
      const code = (err as { code?: unknown }).code;
      if (typeof code === 'string' && code.startsWith(DATA_EXCEPTION_CLASS)) {
        // Retrying the same request can never succeed. The field checks of src/monitor/events/ are
        // meant to refuse every such value first, naming it; reaching this line is a gap in them.
        log.error({ code, err: message }, 'event intake: the database refused a value the field checks let through');
        send(res, 400, { error: `the database refused a value of this request (SQLSTATE ${code}: ${message}); nothing was recorded: fix the value, retrying it unchanged will not help` });
        return;
      }
      // The database is unreachable or failing: the sender should retry (S3, SNS and Event Grid do).
      log.error({ err: message }, 'event intake failed');
      send(res, 503, { error: `events not recorded, retry later: ${message}` });
    }
  };
}
