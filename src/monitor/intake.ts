/**
 * The event intake: `POST /events/:integrationId` on the API server. A request is authenticated with
 * the integration's own event secret (dsx-connect integration event-secret NAME): signed with it
 * (X-DSX-Timestamp + X-DSX-Signature, replays refused), or carrying it (a bearer token or ?token=, for
 * senders that cannot sign); see intake-auth.ts.
 * The body is read up to DSX_EVENT_MAX_BYTES (413 beyond), parsed (400 for anything malformed or that
 * PostgreSQL could not store, naming the field; nothing recorded), and its events recorded with their
 * MonitorEventIngestJob in one transaction before the 202 answer. Event Grid's validation handshakes
 * (the validation event, and the CloudEvents OPTIONS request) and SNS subscription confirmations are
 * answered here. Only a database that is unreachable or failing is a 503 ("retry later").
 */
import type http from 'node:http';
import type pg from 'pg';
import {
  eventIntakeTarget,
  eventSignatureRemember,
  monitorEventsAccept,
  SIGNATURE_EXPIRED,
  SIGNATURE_REPLAYED,
  snsSubscriptionRecord,
  type EventSignature,
} from '../db/sql/monitor.ts';
import type { Logger } from '../log.ts';
import { eventIdentityFor } from '../connectors/event-identity.ts';
import { EventFormatError, parseEventBody, type IdentityOf } from './events/index.ts';
import { authenticate, IntakeAuthError } from './intake-auth.ts';

/** What the event intake is given. */
export interface IntakeOptions {
  pool: pg.Pool;
  log: Logger;
  /** DSX_EVENT_MAX_BYTES: the largest body accepted (413 beyond). */
  maxBytes: number;
  /** DSX_EVENT_MAX_SKEW_S: how far X-DSX-Timestamp may be from now, and how long signatures are remembered. */
  maxSkewS?: number;
  /**
   * The identity step for events of an integration; undefined = the default: verbatim names relative to
   * the prefix for s3 / azure_blob (eventIdentityFor), canonical paths for the other kinds.
   */
  identityFor?: (integration: { kind: string; settings: Record<string, unknown> }) => IdentityOf | undefined;
  /** The clock that judges X-DSX-Timestamp, in ms (Date.now); injected by tests. */
  now?: () => number;
}

/** Default of DSX_EVENT_MAX_SKEW_S: five minutes, as Stripe and Slack allow for signed webhooks. */
export const DEFAULT_MAX_SKEW_S = 300;

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

/** SQLSTATE class 22, data exception: a value PostgreSQL refuses, whenever it is sent again. */
const DATA_EXCEPTION_CLASS = '22';

/** SQLSTATE no_data_found, as dsx_private.raise uses it: the integration is unknown (deleted meanwhile). */
const UNKNOWN_ID = 'P0002';

const SNS_HOST = /^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$/;

/** The connector's naming of event objects (s3, azure_blob); its settings error is the operator's to fix (503). */
function defaultIdentityFor(integration: { kind: string; settings: Record<string, unknown> }): IdentityOf | undefined {
  let step;
  try {
    step = eventIdentityFor(integration);
  } catch (err) {
    throw new HttpError(503, `events not recorded: the integration's settings are invalid (${(err as Error).message}); fix the integration, then the sender's retries are accepted`);
  }
  return step && ((raw) => step(raw));
}

/** The handler of requests to /events/<integration id> (the API server routes them here). */
export function createEventIntake(opts: IntakeOptions) {
  const { pool, log } = opts;
  const maxSkewS = opts.maxSkewS ?? DEFAULT_MAX_SKEW_S;
  const now = opts.now ?? Date.now;
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
      const target = await eventIntakeTarget(pool, integrationId);
      if (target === undefined) throw new HttpError(404, `unknown integration id ${integrationId}`);
      if (target.secret === null) {
        throw new HttpError(403, `integration ${integrationId} has no event secret yet; create one with: dsx-connect integration event-secret <name>`);
      }
      const credential = authenticate(req, url, body, target.secret, { nowMs: now(), maxSkewS });
      // A signed request is accepted once: its signature is remembered with whatever it records.
      const signature: EventSignature | undefined = credential.by === 'signature' ? credential.signature : undefined;
      const remember = () => (signature ? eventSignatureRemember(pool, integrationId, signature) : Promise.resolve());
      if (req.method === 'OPTIONS') {
        // CloudEvents webhook validation (Event Grid with the CloudEvents schema).
        await remember();
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
        parsed = parseEventBody(json, { identityOf: (opts.identityFor ?? defaultIdentityFor)(target) });
      } catch (err) {
        if (err instanceof EventFormatError) throw new HttpError(400, err.message);
        throw err;
      }
      switch (parsed.kind) {
        case 'eventgrid-validation':
          await remember();
          send(res, 200, { validationResponse: parsed.validationCode });
          return;
        case 's3-test':
          await remember();
          send(res, 200, { accepted: 0, note: 's3:TestEvent received' });
          return;
        case 'sns-subscription': {
          await snsSubscriptionRecord(pool, { integrationId, type: parsed.type, topicArn: parsed.topicArn, subscribeUrl: parsed.subscribeUrl }, signature);
          let confirming = false;
          if (parsed.type === 'SubscriptionConfirmation' && parsed.subscribeUrl) {
            const confirmUrl = new URL(parsed.subscribeUrl);
            if (confirmUrl.protocol === 'https:' && SNS_HOST.test(confirmUrl.hostname)) {
              confirming = true;
              fetch(confirmUrl, { signal: AbortSignal.timeout(10_000) }).then(
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
            await remember();
            send(res, 200, { accepted: 0, duplicates: 0, skipped: parsed.skipped, eventIds: [] });
            return;
          }
          const r = await monitorEventsAccept(pool, integrationId, parsed.source, parsed.events, signature);
          send(res, 202, { accepted: r.accepted, duplicates: r.duplicates, skipped: parsed.skipped, eventIds: r.event_ids });
          return;
        }
      }
    } catch (err) {
      if (err instanceof HttpError) {
        send(res, err.status, { error: err.message });
        return;
      }
      if (err instanceof IntakeAuthError) {
        send(res, 401, { error: err.message });
        return;
      }
      const message = (err as Error).message;
      const code = (err as { code?: unknown }).code;
      // 409, not 401: the request is authentic (its signature verified) and was accepted before, e.g.
      // a retry after a lost answer; what a sender should do differs from a bad credential, and an
      // attacker replaying a captured request learns nothing it did not know.
      if (code === SIGNATURE_REPLAYED) {
        const hint = (err as { hint?: unknown }).hint;
        send(res, 409, { error: typeof hint === 'string' && hint ? `${message}. ${hint}` : message });
        return;
      }
      if (code === SIGNATURE_EXPIRED) {
        send(res, 401, { error: message });
        return;
      }
      if (code === UNKNOWN_ID) {
        send(res, 404, { error: message });
        return;
      }
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
