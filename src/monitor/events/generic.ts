/**
 * The generic form, for any sender: `{"objectIdentity", "eventType": "created" | "modified" |
 * "deleted", "etag"?, "size"?, "occurredAt"?, "eventId"?}`, one event, an array, or `{"events": [...]}`.
 */
import { z } from 'zod';
import type { IncomingEvent } from '../../db/sql/monitor.ts';
import { storedText, timestamp } from './fields.ts';
import { checkCount, EventFormatError, parseWith } from './format-error.ts';
import { checkedIdentity } from './identity.ts';
import type { IdentityOf, ParsedBody } from './types.ts';

const genericEvent = z
  .object({
    objectIdentity: z.string().min(1),
    eventType: z.enum(['created', 'modified', 'deleted']),
    etag: storedText.max(1024).optional(),
    size: z.number().int().min(0).optional(),
    occurredAt: timestamp.optional(),
    eventId: storedText.min(1).max(512).optional(),
  })
  .strict();

/** True when `v` looks like one generic event. */
export function looksLikeGeneric(v: unknown): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && 'objectIdentity' in v;
}

/** A list of generic events; `prefix` (`""` or `"events."`) leads the field names in errors. */
export function fromGeneric(list: unknown[], prefix: string, identityOf: IdentityOf): ParsedBody {
  if (list.length === 0) throw new EventFormatError('no events in the request');
  checkCount(list.length);
  let skipped = 0;
  const events: IncomingEvent[] = [];
  list.forEach((raw, i) => {
    const where = list.length > 1 || prefix ? `${prefix}${i}` : '';
    const e = parseWith(genericEvent, raw, where);
    const identity = checkedIdentity(identityOf, e.objectIdentity, `${where ? `${where}.` : ''}objectIdentity`);
    if (identity === null) {
      skipped++;
      return;
    }
    events.push({
      external_id: e.eventId ? `generic:${e.eventId}` : null,
      event_type: e.eventType,
      container: null,
      object_identity: identity,
      etag: e.etag ?? null,
      size: e.size ?? null,
      occurred_at: e.occurredAt ?? null,
    });
  });
  return { kind: 'events', source: 'generic', events, skipped };
}
