/** Which provider format a body is in, decided on its shape, and the parse that follows. */
import { fromEventBridge, looksLikeEventBridge } from './eventbridge.ts';
import { fromEventGrid, looksLikeGrid } from './eventgrid.ts';
import { checkCount, EventFormatError } from './format-error.ts';
import { fromGeneric, looksLikeGeneric } from './generic.ts';
import { canonicalIdentity } from './identity.ts';
import { fromS3Records } from './s3.ts';
import { fromSns, looksLikeSns } from './sns.ts';
import type { ParseOptions, ParsedBody } from './types.ts';

const EXPECTED =
  'expected an S3 event notification ({"Records": [...]}), an SNS envelope, an EventBridge S3 event, ' +
  'Azure Event Grid events, or the generic form {"objectIdentity": ..., "eventType": "created"|"modified"|"deleted"}';

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Parses a decoded JSON body into events (or a handshake). Throws EventFormatError, naming the field,
 * for anything malformed or that PostgreSQL could not store: the request is refused as a whole.
 */
export function parseEventBody(body: unknown, options: ParseOptions = {}): ParsedBody {
  const identityOf = options.identityOf ?? canonicalIdentity;
  if (Array.isArray(body)) {
    if (body.length === 0) throw new EventFormatError('no events in the request');
    const first = body[0];
    if (looksLikeGrid(first)) return fromEventGrid(body, identityOf);
    if (looksLikeEventBridge(first)) {
      checkCount(body.length);
      return { kind: 'events', source: 'eventbridge', ...fromEventBridge(body, identityOf) };
    }
    if (looksLikeGeneric(first)) return fromGeneric(body, '', identityOf);
    throw new EventFormatError(`unrecognized event format: ${EXPECTED}`);
  }
  if (!isObject(body)) throw new EventFormatError(`the body must be a JSON object or array: ${EXPECTED}`);
  if (looksLikeSns(body)) return fromSns(body, identityOf);
  if ('Records' in body) return { kind: 'events', source: 's3', ...fromS3Records(body.Records, 'Records', identityOf) };
  if (body.Event === 's3:TestEvent') return { kind: 's3-test' };
  if (looksLikeEventBridge(body)) return { kind: 'events', source: 'eventbridge', ...fromEventBridge([body], identityOf) };
  if (looksLikeGrid(body)) return fromEventGrid([body], identityOf);
  if ('events' in body) {
    if (!Array.isArray(body.events)) throw new EventFormatError('events: must be an array');
    return fromGeneric(body.events, 'events.', identityOf);
  }
  if ('objectIdentity' in body) return fromGeneric([body], '', identityOf);
  throw new EventFormatError(`unrecognized event format: ${EXPECTED}`);
}
