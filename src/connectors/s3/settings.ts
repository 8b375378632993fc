/**
 * What an S3 integration is configured with: its settings as stored in `dsx.integrations.settings`
 * (snake_case, never a secret) and its credentials (stored write-only elsewhere and passed in). Both are
 * `unknown` until these schemas accept them; a rejection is one line that names the field and says what
 * to do, and never echoes a value (a credential put in the wrong field must not reach a log).
 */
import { z } from 'zod';
import type { LimitOptions } from '../rate-limit.ts';
import { ConnectorError } from '../types.ts';

/**
 * Bucket names: AWS allows 3-63 lowercase letters, digits, dots and hyphens; S3-compatible stores are
 * laxer (underscores, capitals, up to 255), so only the characters that can never be in a bucket name
 * are refused here and the store has the last word.
 */
const bucketName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$/, 'must be a bucket name (3-63 lowercase letters, digits, dots and hyphens)');

/** A key prefix: a directory-like base. `data` means `data/` (a bare `data` would also match `database/`). */
const keyPrefix = z
  .string()
  .refine((p) => !p.startsWith('/'), 'must not start with "/" (S3 keys have no leading slash unless you mean an empty first segment)')
  .refine((p) => p.isWellFormed(), 'must be valid Unicode')
  .transform((p) => (p === '' || p.endsWith('/') ? p : `${p}/`));

const httpUrl = z.url({ protocol: /^https?$/, error: 'must be an http(s) URL such as https://s3.example.com:9000' });

/** Settings of an S3 integration, as stored (before defaults). */
export const S3SettingsSchema = z
  .strictObject({
    bucket: bucketName,
    /** Base prefix of the integration: identities are keys relative to it. */
    prefix: keyPrefix.default(''),
    /** Endpoint of an S3-compatible store (MinIO, Ceph, ...); unset = AWS for `region`. */
    endpoint: httpUrl.optional(),
    region: z.string().regex(/^[a-z0-9-]{2,32}$/, 'must be a region name such as us-east-1').default('us-east-1'),
    /** Path-style URLs (`endpoint/bucket/key`); default: on when `endpoint` is set, off for AWS. */
    path_style: z.boolean().optional(),
    /** A separate bucket for quarantined objects (keys kept as they were). */
    quarantine_bucket: bucketName.optional(),
    /** A key prefix in the same bucket for quarantined objects (default `dsx-quarantine/`). */
    quarantine_prefix: keyPrefix.refine((p) => p !== '', 'must not be empty (it would be the whole bucket)').optional(),
    /** `tags`: verdict tags are merged into each object's tags; `none`: tag actions are `not_supported`. */
    tag_mode: z.enum(['tags', 'none']).default('tags'),
    limits: z
      .strictObject({
        max_in_flight: z.int().min(1).max(1024).optional(),
        max_per_second: z.number().min(0).max(100_000).optional(),
      })
      .optional(),
    /** SQS queue carrying the bucket's event notifications (directly or through SNS). */
    event_queue_url: httpUrl.optional(),
    /** Endpoint of an SQS-compatible service for event_queue_url (default: the queue URL's own host). */
    event_queue_endpoint: httpUrl.optional(),
    /** Fault injection of the registry's FaultyConnector wrapper (not read by this connector). */
    faults: z.record(z.string(), z.unknown()).optional(),
  })
  .refine((s) => !(s.quarantine_bucket && s.quarantine_prefix), {
    message: 'set quarantine_bucket or quarantine_prefix, not both',
    path: ['quarantine_prefix'],
  })
  .refine((s) => s.quarantine_bucket !== s.bucket, {
    message: 'must differ from bucket; use quarantine_prefix to quarantine inside the same bucket',
    path: ['quarantine_bucket'],
  })
  .refine((s) => s.quarantine_bucket !== undefined || !s.prefix.startsWith(s.quarantine_prefix ?? DEFAULT_QUARANTINE_PREFIX), {
    message: 'the integration prefix lies inside the quarantine prefix: choose a quarantine_prefix outside it',
    path: ['prefix'],
  });

/** Settings of an S3 integration, defaults applied. */
export type S3Settings = z.output<typeof S3SettingsSchema>;

/** The quarantine location when neither `quarantine_bucket` nor `quarantine_prefix` is set. */
export const DEFAULT_QUARANTINE_PREFIX = 'dsx-quarantine/';

/** Static credentials of an S3 integration. Absent: the SDK's default chain. */
export const S3CredentialsSchema = z.strictObject({
  accessKeyId: z.string().min(1, 'must not be empty'),
  secretAccessKey: z.string().min(1, 'must not be empty'),
  sessionToken: z.string().min(1, 'must not be empty').optional(),
});

/** Static credentials (an access key, optionally with the session token of temporary credentials). */
export type S3Credentials = z.output<typeof S3CredentialsSchema>;

/** First issue of a zod error as `where.path: message` (messages never quote the rejected value). */
function oneLine(error: z.ZodError, where: string): string {
  const issue = error.issues[0]!;
  const path = issue.path.map(String).join('.');
  return `${where}${path ? `.${path}` : ''}: ${issue.message}`;
}

/** Accepts stored settings or throws ConnectorError('configuration') naming the field. */
export function parseS3Settings(input: unknown): S3Settings {
  const r = S3SettingsSchema.safeParse(input);
  if (!r.success) {
    throw new ConnectorError('configuration', `S3 integration settings: ${oneLine(r.error, 'settings')} (fix the integration's settings)`);
  }
  return r.data;
}

/**
 * Accepts credentials (null/undefined = the SDK's default chain: environment, shared profile, web
 * identity, container or instance role) or throws ConnectorError('configuration') naming the field.
 */
export function parseS3Credentials(input: unknown): S3Credentials | null {
  if (input === null || input === undefined) return null;
  const r = S3CredentialsSchema.safeParse(input);
  if (!r.success) {
    // zod's messages for these fields name types and keys only, never the values.
    throw new ConnectorError('configuration', `S3 integration credentials: ${oneLine(r.error, 'credentials')} (set accessKeyId and secretAccessKey, or none for the default AWS chain)`);
  }
  return r.data;
}

/** The integration's request limits, for the registry's one RequestLimiter per integration. */
export function limiterOptionsOf(settings: S3Settings): LimitOptions {
  return { maxInFlight: settings.limits?.max_in_flight, maxPerSecond: settings.limits?.max_per_second };
}
