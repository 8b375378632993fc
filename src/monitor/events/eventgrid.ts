/**
 * Azure Event Grid: a batch (array) of `Microsoft.Storage.BlobCreated` / `BlobDeleted` events in the
 * Event Grid schema (`eventType`, `eventTime`) or the CloudEvents 1.0 schema (`specversion`, `type`,
 * `time`), and the subscription-validation handshake. The container and blob name come from `subject`
 * (`/blobServices/default/containers/<c>/blobs/<name>`).
 */
import { z } from 'zod';
import type { IncomingEvent } from '../../db/sql/monitor.ts';
import { size, storedText, timestamp } from './fields.ts';
import { checkCount, EventFormatError, parseWith } from './format-error.ts';
import { checkedIdentity } from './identity.ts';
import type { IdentityOf, ParsedBody } from './types.ts';

const blobSubject = /^\/blobServices\/default\/containers\/([^/]+)\/blobs\/(.+)$/;

const gridEvent = z.object({
  id: storedText.min(1),
  subject: storedText.optional(),
  eventType: z.string().min(1).optional(), // Event Grid schema
  type: z.string().min(1).optional(), // CloudEvents schema
  eventTime: timestamp.optional(),
  time: timestamp.optional(),
  data: z
    .object({
      validationCode: z.string().optional(),
      eTag: storedText.optional(),
      contentLength: size.optional(),
    })
    .loose()
    .optional(),
});

/** True when `v` looks like one Event Grid or CloudEvents event. */
export function looksLikeGrid(v: unknown): boolean {
  return typeof v === 'object' && v !== null && ('eventType' in v || ('specversion' in v && 'type' in v)) && 'id' in v;
}

/** A batch of Event Grid / CloudEvents events: its blob events, or the validation handshake. */
export function fromEventGrid(list: unknown[], identityOf: IdentityOf): ParsedBody {
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
    const identity = checkedIdentity(identityOf, m[2]!, `${i}.subject`);
    if (identity === null) {
      skipped++;
      continue;
    }
    events.push({
      external_id: `eventgrid:${e.id}`,
      event_type: kind,
      container: m[1]!,
      object_identity: identity,
      etag: e.data?.eTag ?? null,
      size: e.data?.contentLength ?? null,
      occurred_at: e.eventTime ?? e.time ?? null,
    });
  }
  return { kind: 'events', source: 'eventgrid', events, skipped };
}
