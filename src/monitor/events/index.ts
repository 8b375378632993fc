/**
 * Storage event formats accepted by the intake (POST /events/:integrationId), parsed into one shape.
 * The public entry of src/monitor/events/: one module per provider format, the dispatcher and the
 * shared field types live beside it.
 *
 * - Amazon S3 event notifications (s3.ts): `{"Records": [...]}` as S3 posts them (also to SQS/Lambda),
 *   the same wrapped in an SNS envelope (sns.ts), and S3 events from EventBridge (eventbridge.ts). S3
 *   object keys are URL-encoded (`+` for a space) in all three and are decoded.
 * - Azure Event Grid (eventgrid.ts): arrays of `Microsoft.Storage.BlobCreated` / `BlobDeleted` events
 *   in the Event Grid or CloudEvents 1.0 schema, including the subscription-validation handshake.
 * - The generic form (generic.ts).
 *
 * Event kinds that are neither a creation, a change nor a deletion (restores, tier changes, tagging)
 * are skipped and counted in the response. Anything malformed, or that PostgreSQL could not store (a
 * NUL, an unpaired surrogate, a timestamp it refuses, a size beyond a safe integer), throws
 * EventFormatError (HTTP 400) naming the field: the request is refused as a whole and nothing is
 * recorded.
 */
export { parseEventBody } from './dispatch.ts';
export { canonicalTimestamp, textProblem } from './fields.ts';
export { EventFormatError, MAX_EVENTS_PER_REQUEST } from './format-error.ts';
export { canonicalIdentity, MAX_IDENTITY_BYTES } from './identity.ts';
export type { EventSource, IdentityOf, ParseOptions, ParsedBody } from './types.ts';
