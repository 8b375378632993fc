/**
 * Storage event formats accepted by the intake (POST /events/:integrationId), parsed into one shape:
 *
 * - Amazon S3 event notifications: `{"Records": [...]}` as S3 posts them (also to SQS/Lambda), the same
 *   wrapped in an SNS envelope (`{"Type": "Notification", "Message": "<json>"}`), and S3 events from
 *   EventBridge (`{"source": "aws.s3", "detail-type": "Object Created", "detail": {...}}`, one event
 *   or an array of them, as an API destination sends them). S3 object keys are URL-encoded (`+` for a
 *   space) in both and are decoded here.
 * - Azure Event Grid: arrays of `Microsoft.Storage.BlobCreated` / `BlobDeleted` events in the Event
 *   Grid schema or the CloudEvents 1.0 schema, including the subscription-validation handshake.
 * - The generic form: `{"objectIdentity", "eventType": "created" | "modified" | "deleted", "etag"?,
 *   "size"?, "occurredAt"?, "eventId"?}`, one event, an array, or `{"events": [...]}`.
 *
 * Event kinds that are neither a creation, a change nor a deletion (restores, tier changes, tagging)
 * are skipped and counted in the response. Anything malformed throws EventFormatError (HTTP 400): the
 * request is refused as a whole and nothing is recorded.
 */
import { z } from 'zod';
import { normalizeRelativePath } from '../connectors/identity.ts';
import type { IncomingEvent } from '../db/sql/monitor.ts';

export type EventSource = 's3' | 'sns' | 'eventbridge' | 'eventgrid' | 'generic';

export type ParsedBody =
  | { kind: 'events'; source: EventSource; events: IncomingEvent[]; skipped: number }
  | { kind: 'eventgrid-validation'; validationCode: string }
  | { kind: 'sns-subscription'; type: string; topicArn: string; subscribeUrl: string | null }
  | { kind: 's3-test' };

/** A body that is not one of the accepted forms, or carries an invalid event; the message says why. */
export class EventFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EventFormatError';
  }
}

/** Most events one request may carry. */
export const MAX_EVENTS_PER_REQUEST = 10_000;
/** Longest object identity accepted, in bytes (UTF-8). */
export const MAX_IDENTITY_BYTES = 4096;

function checkCount(n: number): void {
  if (n > MAX_EVENTS_PER_REQUEST) throw new EventFormatError(`too many events (${n}; at most ${MAX_EVENTS_PER_REQUEST} per request)`);
}

function describe(error: z.ZodError, where: string): string {
  const issue = error.issues[0]!;
  const path = [where, ...issue.path.map(String)].filter(Boolean).join('.');
  return `${path || '(body)'}: ${issue.message}`;
}

function parseWith<T extends z.ZodType>(schema: T, value: unknown, where: string): z.infer<T> {
  const r = schema.safeParse(value);
  if (!r.success) throw new EventFormatError(`invalid event at ${describe(r.error, where)}`);
  return r.data;
}

/** Validates an object identity and returns its canonical form. */
function identityOf(raw: string, where: string): string {
  if (Buffer.byteLength(raw) > MAX_IDENTITY_BYTES) throw new EventFormatError(`${where}: object identity longer than ${MAX_IDENTITY_BYTES} bytes`);
  let id: string;
  try {
    id = normalizeRelativePath(raw);
  } catch (err) {
    throw new EventFormatError(`${where}: ${(err as Error).message}`);
  }
  if (id === '') throw new EventFormatError(`${where}: object identity ${JSON.stringify(raw)} names no object`);
  return id;
}

function decodeS3Key(key: string, where: string): string {
  try {
    return decodeURIComponent(key.replace(/\+/g, ' '));
  } catch {
    throw new EventFormatError(`${where}: object key ${JSON.stringify(key)} is not valid URL encoding`);
  }
}

const isoTime = z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'must be an ISO-8601 timestamp');
const size = z.union([z.number().int().min(0), z.string().regex(/^\d{1,18}$/).transform(Number)]);

// ---- Amazon S3 ------------------------------------------------------------------------------------

const s3Record = z.object({
  eventName: z.string().min(1),
  eventTime: isoTime.optional(),
  s3: z.object({
    bucket: z.object({ name: z.string().min(1) }),
    object: z.object({
      key: z.string().min(1),
      size: size.optional(),
      eTag: z.string().optional(),
      versionId: z.string().nullish(),
      sequencer: z.string().optional(),
    }),
  }),
});

function s3EventType(name: string): IncomingEvent['event_type'] | null {
  if (name.startsWith('ObjectCreated:')) return 'created';
  if (name.startsWith('ObjectRemoved:')) return 'deleted';
  return null;
}

function fromS3Records(records: unknown, where: string): { events: IncomingEvent[]; skipped: number } {
  const list = parseWith(z.array(z.unknown()).max(MAX_EVENTS_PER_REQUEST), records, where);
  const events: IncomingEvent[] = [];
  let skipped = 0;
  list.forEach((raw, i) => {
    const r = parseWith(s3Record, raw, `${where}.${i}`);
    const type = s3EventType(r.eventName);
    if (!type) {
      skipped++;
      return;
    }
    const key = decodeS3Key(r.s3.object.key, `${where}.${i}.s3.object.key`);
    const o = r.s3.object;
    events.push({
      external_id: o.sequencer ? `s3:${r.s3.bucket.name}/${key}@${o.sequencer}` : null,
      event_type: type,
      container: r.s3.bucket.name,
      object_identity: identityOf(key, `${where}.${i}.s3.object.key`),
      etag: o.eTag ?? null,
      size: o.size ?? null,
      occurred_at: r.eventTime ?? null,
    });
  });
  return { events, skipped };
}

const eventBridgeEvent = z.object({
  id: z.string().min(1),
  'detail-type': z.string().min(1),
  source: z.literal('aws.s3'),
  time: isoTime.optional(),
  detail: z.object({
    bucket: z.object({ name: z.string().min(1) }),
    object: z.object({ key: z.string().min(1), size: size.optional(), etag: z.string().optional(), sequencer: z.string().optional() }),
  }),
});

function fromEventBridge(list: unknown[]): { events: IncomingEvent[]; skipped: number } {
  const events: IncomingEvent[] = [];
  let skipped = 0;
  list.forEach((raw, i) => {
    const e = parseWith(eventBridgeEvent, raw, list.length > 1 ? String(i) : '');
    const dt = e['detail-type'];
    const type = dt === 'Object Created' ? 'created' : dt === 'Object Deleted' ? 'deleted' : null;
    if (!type) {
      skipped++;
      return;
    }
    const where = `${list.length > 1 ? `${i}.` : ''}detail.object.key`;
    const key = decodeS3Key(e.detail.object.key, where);
    events.push({
      external_id: `eventbridge:${e.id}`,
      event_type: type,
      container: e.detail.bucket.name,
      object_identity: identityOf(key, where),
      etag: e.detail.object.etag ?? null,
      size: e.detail.object.size ?? null,
      occurred_at: e.time ?? null,
    });
  });
  return { events, skipped };
}

const snsEnvelope = z.object({
  Type: z.enum(['Notification', 'SubscriptionConfirmation', 'UnsubscribeConfirmation']),
  MessageId: z.string().min(1),
  TopicArn: z.string().min(1),
  Message: z.string(),
  SubscribeURL: z.string().optional(),
});

// ---- Azure Event Grid -----------------------------------------------------------------------------

const blobSubject = /^\/blobServices\/default\/containers\/([^/]+)\/blobs\/(.+)$/;

const gridEvent = z.object({
  id: z.string().min(1),
  subject: z.string().optional(),
  eventType: z.string().min(1).optional(), // Event Grid schema
  type: z.string().min(1).optional(), // CloudEvents schema
  eventTime: isoTime.optional(),
  time: isoTime.optional(),
  data: z
    .object({
      validationCode: z.string().optional(),
      eTag: z.string().optional(),
      contentLength: size.optional(),
    })
    .passthrough()
    .optional(),
});

function looksLikeGrid(v: unknown): boolean {
  return typeof v === 'object' && v !== null && ('eventType' in v || ('specversion' in v && 'type' in v)) && 'id' in v;
}

function fromEventGrid(list: unknown[]): ParsedBody {
  checkCount(list.length);
  const events: IncomingEvent[] = [];
  let skipped = 0;
  for (const [i, raw] of list.entries()) {
    const e = parseWith(gridEvent, raw, String(i));
    const type = e.eventType ?? e.type!;
    if (type === 'Microsoft.EventGrid.SubscriptionValidationEvent') {
      const code = e.data?.validationCode;
      if (!code) throw new EventFormatError(`${i}.data.validationCode: missing in a subscription validation event`);
      return { kind: 'eventgrid-validation', validationCode: code };
    }
    const kind = type === 'Microsoft.Storage.BlobCreated' ? 'created' : type === 'Microsoft.Storage.BlobDeleted' ? 'deleted' : null;
    if (!kind) {
      skipped++;
      continue;
    }
    const m = e.subject ? blobSubject.exec(e.subject) : null;
    if (!m) {
      throw new EventFormatError(`${i}.subject: expected /blobServices/default/containers/<container>/blobs/<name>, got ${JSON.stringify(e.subject ?? null)}`);
    }
    events.push({
      external_id: `eventgrid:${e.id}`,
      event_type: kind,
      container: m[1]!,
      object_identity: identityOf(m[2]!, `${i}.subject`),
      etag: e.data?.eTag ?? null,
      size: e.data?.contentLength ?? null,
      occurred_at: e.eventTime ?? e.time ?? null,
    });
  }
  return { kind: 'events', source: 'eventgrid', events, skipped };
}

// ---- Generic --------------------------------------------------------------------------------------

const genericEvent = z
  .object({
    objectIdentity: z.string().min(1),
    eventType: z.enum(['created', 'modified', 'deleted']),
    etag: z.string().max(1024).optional(),
    size: z.number().int().min(0).optional(),
    occurredAt: isoTime.optional(),
    eventId: z.string().min(1).max(512).optional(),
  })
  .strict();

function fromGeneric(list: unknown[], prefix: string): ParsedBody {
  if (list.length === 0) throw new EventFormatError('no events in the request');
  checkCount(list.length);
  const events = list.map((raw, i) => {
    const where = list.length > 1 || prefix ? `${prefix}${i}` : '';
    const e = parseWith(genericEvent, raw, where);
    return {
      external_id: e.eventId ? `generic:${e.eventId}` : null,
      event_type: e.eventType,
      container: null,
      object_identity: identityOf(e.objectIdentity, `${where ? `${where}.` : ''}objectIdentity`),
      etag: e.etag ?? null,
      size: e.size ?? null,
      occurred_at: e.occurredAt ?? null,
    } satisfies IncomingEvent;
  });
  return { kind: 'events', source: 'generic', events, skipped: 0 };
}

// ---- Dispatch -------------------------------------------------------------------------------------

const EXPECTED =
  'expected an S3 event notification ({"Records": [...]}), an SNS envelope, an EventBridge S3 event, ' +
  'Azure Event Grid events, or the generic form {"objectIdentity": ..., "eventType": "created"|"modified"|"deleted"}';

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Parses a decoded JSON body into events (or a handshake). Throws EventFormatError. */
export function parseEventBody(body: unknown): ParsedBody {
  if (Array.isArray(body)) {
    if (body.length === 0) throw new EventFormatError('no events in the request');
    const first = body[0];
    if (looksLikeGrid(first)) return fromEventGrid(body);
    if (isObject(first) && first.source === 'aws.s3') {
      checkCount(body.length);
      return { kind: 'events', source: 'eventbridge', ...fromEventBridge(body) };
    }
    if (isObject(first) && 'objectIdentity' in first) return fromGeneric(body, '');
    throw new EventFormatError(`unrecognized event format: ${EXPECTED}`);
  }
  if (!isObject(body)) throw new EventFormatError(`the body must be a JSON object or array: ${EXPECTED}`);
  if ('Type' in body && 'TopicArn' in body) {
    const env = parseWith(snsEnvelope, body, '');
    if (env.Type !== 'Notification') {
      return { kind: 'sns-subscription', type: env.Type, topicArn: env.TopicArn, subscribeUrl: env.SubscribeURL ?? null };
    }
    let message: unknown;
    try {
      message = JSON.parse(env.Message);
    } catch {
      throw new EventFormatError('Message: the SNS notification does not carry JSON');
    }
    if (isObject(message) && message.Event === 's3:TestEvent') return { kind: 's3-test' };
    if (!isObject(message) || !('Records' in message)) throw new EventFormatError('Message: expected an S3 event notification ({"Records": [...]})');
    return { kind: 'events', source: 'sns', ...fromS3Records(message.Records, 'Message.Records') };
  }
  if ('Records' in body) return { kind: 'events', source: 's3', ...fromS3Records(body.Records, 'Records') };
  if (body.Event === 's3:TestEvent') return { kind: 's3-test' };
  if (body.source === 'aws.s3') return { kind: 'events', source: 'eventbridge', ...fromEventBridge([body]) };
  if (looksLikeGrid(body)) return fromEventGrid([body]);
  if ('events' in body) {
    if (!Array.isArray(body.events)) throw new EventFormatError('events: must be an array');
    return fromGeneric(body.events, 'events.');
  }
  if ('objectIdentity' in body) return fromGeneric([body], '');
  throw new EventFormatError(`unrecognized event format: ${EXPECTED}`);
}
