/**
 * Amazon S3 events delivered by EventBridge (`{"source": "aws.s3", "detail-type": "Object Created",
 * "detail": {...}}`), one event or an array of them, as an API destination sends them. The key is in
 * `detail.object.key`, URL-encoded as in S3 notifications.
 */
import { z } from 'zod';
import type { IncomingEvent } from '../../db/sql/monitor.ts';
import { size, storedText, timestamp } from './fields.ts';
import { parseWith } from './format-error.ts';
import { checkedIdentity } from './identity.ts';
import { decodeS3Key } from './s3.ts';
import type { IdentityOf, ParsedEvents } from './types.ts';

const eventBridgeEvent = z.object({
  id: storedText.min(1),
  'detail-type': z.string().min(1),
  source: z.literal('aws.s3'),
  time: timestamp.optional(),
  detail: z.object({
    bucket: z.object({ name: storedText.min(1) }),
    object: z.object({ key: z.string().min(1), size: size.optional(), etag: storedText.optional(), sequencer: z.string().optional() }),
  }),
});

/** True when `v` is an EventBridge event from S3. */
export function looksLikeEventBridge(v: unknown): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && (v as Record<string, unknown>).source === 'aws.s3';
}

/** The events of a list of EventBridge events (field names are prefixed by the index when there are several). */
export function fromEventBridge(list: unknown[], identityOf: IdentityOf): ParsedEvents {
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
    const identity = checkedIdentity(identityOf, key, where);
    if (identity === null) {
      skipped++;
      return;
    }
    events.push({
      external_id: `eventbridge:${e.id}`,
      event_type: type,
      container: e.detail.bucket.name,
      object_identity: identity,
      etag: e.detail.object.etag ?? null,
      size: e.detail.object.size ?? null,
      occurred_at: e.time ?? null,
    });
  });
  return { events, skipped };
}
