/**
 * Amazon SNS over HTTP(S): an envelope whose `Type` (also in header x-amz-sns-message-type) is a
 * Notification carrying the S3 event as a JSON string in `Message`, or a subscription handshake.
 * (With raw message delivery the body is the bare S3 event, parsed by s3.ts.)
 */
import { z } from 'zod';
import { storedText } from './fields.ts';
import { EventFormatError, parseWith } from './format-error.ts';
import { fromS3Records } from './s3.ts';
import type { IdentityOf, ParsedBody } from './types.ts';

const snsEnvelope = z.object({
  Type: z.enum(['Notification', 'SubscriptionConfirmation', 'UnsubscribeConfirmation']),
  MessageId: z.string().min(1),
  TopicArn: storedText.min(1),
  Message: z.string(),
  // Recorded in the audit log and, for an AWS host, fetched to confirm the subscription.
  SubscribeURL: storedText.refine((u) => URL.canParse(u), 'must be a URL').optional(),
});

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** True when `body` claims to be an SNS envelope (then fromSns decides whether it is a valid one). */
export function looksLikeSns(body: Record<string, unknown>): boolean {
  return 'Type' in body && 'TopicArn' in body;
}

/** An SNS envelope: its S3 events, the S3 test event, or a subscription handshake. */
export function fromSns(body: unknown, identityOf: IdentityOf): ParsedBody {
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
  return { kind: 'events', source: 'sns', ...fromS3Records(message.Records, 'Message.Records', identityOf) };
}
