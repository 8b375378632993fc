/**
 * Amazon S3 event notification records (`{"Records": [...]}`), as S3 posts them to SQS, Lambda or an
 * SNS topic. Object keys arrive form-URL-encoded ("red flower.jpg" as "red+flower.jpg") and are decoded
 * here; `sequencer` (PUT and DELETE) is the event's id for deduplication.
 */
import { z } from 'zod';
import type { IncomingEvent } from '../../db/sql/monitor.ts';
import { size, storedText, textProblem, timestamp } from './fields.ts';
import { EventFormatError, MAX_EVENTS_PER_REQUEST, parseWith, shown } from './format-error.ts';
import { checkedIdentity } from './identity.ts';
import type { IdentityOf, ParsedEvents } from './types.ts';

/** The object key of an S3 (or EventBridge S3) event, decoded: `+` is a space, then `%xx`. */
export function decodeS3Key(key: string, where: string): string {
  let decoded: string;
  try {
    decoded = decodeURIComponent(key.replace(/\+/g, ' '));
  } catch {
    throw new EventFormatError(`${where}: object key ${shown(key)} is not valid URL encoding`);
  }
  // `%00` decodes to a NUL; a literal unpaired surrogate survives decoding.
  const problem = textProblem(decoded);
  if (problem) throw new EventFormatError(`${where}: object key ${problem}`);
  return decoded;
}

const s3Record = z.object({
  eventName: z.string().min(1),
  eventTime: timestamp.optional(),
  s3: z.object({
    bucket: z.object({ name: storedText.min(1) }),
    object: z.object({
      key: z.string().min(1),
      size: size.optional(),
      eTag: storedText.optional(),
      versionId: z.string().nullish(),
      sequencer: storedText.optional(),
    }),
  }),
});

function s3EventType(name: string): IncomingEvent['event_type'] | null {
  if (name.startsWith('ObjectCreated:')) return 'created';
  if (name.startsWith('ObjectRemoved:')) return 'deleted';
  return null;
}

/** The events of an S3 `Records` array found at `where` (`Records`, or `Message.Records` inside SNS). */
export function fromS3Records(records: unknown, where: string, identityOf: IdentityOf): ParsedEvents {
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
    const keyField = `${where}.${i}.s3.object.key`;
    const key = decodeS3Key(r.s3.object.key, keyField);
    const o = r.s3.object;
    const identity = checkedIdentity(identityOf, key, keyField);
    if (identity === null) {
      skipped++;
      return;
    }
    events.push({
      external_id: o.sequencer ? `s3:${r.s3.bucket.name}/${key}@${o.sequencer}` : null,
      event_type: type,
      container: r.s3.bucket.name,
      object_identity: identity,
      etag: o.eTag ?? null,
      size: o.size ?? null,
      occurred_at: r.eventTime ?? null,
    });
  });
  return { events, skipped };
}
