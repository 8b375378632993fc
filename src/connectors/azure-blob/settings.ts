/**
 * Settings of an Azure Blob integration, as stored in `dsx.integrations.settings` (snake_case JSON,
 * never secrets: credentials live apart, write-only, see credentials.ts).
 *
 * ```json
 * { "container": "uploads", "prefix": "tenant-a/", "account_url": "https://acct.blob.core.windows.net",
 *   "quarantine_container": "dsx-quarantine", "tag_mode": "index_tags",
 *   "limits": { "max_in_flight": 32, "max_per_second": 500 },
 *   "event_queue_url": "https://acct.queue.core.windows.net/dsx-events" }
 * ```
 */
import { z } from 'zod';
import type { LimitOptions } from '../rate-limit.ts';
import { ConnectorError } from '../types.ts';

/** Where quarantined blobs go when neither quarantine setting is given: this prefix under `prefix`. */
export const DEFAULT_QUARANTINE_PREFIX = 'dsx-quarantine/';

/** Azure's limit on a blob name, in characters. */
export const MAX_BLOB_NAME_LENGTH = 1024;

// Azure's container naming rule: 3-63 characters, lowercase letters, digits and single hyphens, starting
// and ending with a letter or digit; `$root` and `$web` are the two special containers.
const CONTAINER_NAME = /^(?:\$root|\$web|[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62})$/;

const containerName = z
  .string()
  .refine((s) => CONTAINER_NAME.test(s), 'must be a container name: 3-63 lowercase letters, digits and single hyphens, starting and ending with a letter or digit');

/** A blob-name prefix: `""` or ending in `/`; never with `.` or `..` segments, which the SDK resolves as a URL path. */
const blobPrefix = z
  .string()
  .max(MAX_BLOB_NAME_LENGTH - 1)
  .transform((s) => (s === '' || s.endsWith('/') ? s : `${s}/`))
  .refine((s) => !s.split('/').some((seg) => seg === '.' || seg === '..'), 'must not contain "." or ".." segments (the SDK resolves them like a URL path)');

const httpUrl = z
  .string()
  .url()
  .refine((s) => /^https?:\/\//i.test(s), 'must be an http(s) URL')
  .refine((s) => !new URL(s).search, 'must not carry a query string (a SAS token goes into the credentials, as sasToken)');

const settingsSchema = z
  .object({
    container: containerName,
    prefix: blobPrefix.default(''),
    account_url: httpUrl.transform((s) => s.replace(/\/+$/, '')).optional(),
    quarantine_container: containerName.optional(),
    quarantine_prefix: blobPrefix.refine((s) => s !== '', 'must not be empty (it would make every blob internal)').optional(),
    tag_mode: z.enum(['index_tags', 'metadata', 'none']).default('index_tags'),
    limits: z
      .object({
        max_in_flight: z.number().int().min(1).max(10_000).optional(),
        max_per_second: z.number().min(0).max(100_000).optional(),
      })
      .strict()
      .default({}),
    event_queue_url: httpUrl.optional(),
    /** Fault injection, read by the connector registry's wrapper (not by this connector). */
    faults: z.unknown().optional(),
  })
  .strict()
  .superRefine((s, ctx) => {
    if (s.quarantine_container !== undefined && s.quarantine_prefix !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['quarantine_container'], message: 'give quarantine_container or quarantine_prefix, not both' });
    }
    if (s.quarantine_container !== undefined && s.quarantine_container === s.container) {
      ctx.addIssue({ code: 'custom', path: ['quarantine_container'], message: 'must differ from container (use quarantine_prefix to quarantine inside the same container)' });
    }
    if (s.quarantine_prefix !== undefined && s.prefix.startsWith(s.quarantine_prefix)) {
      ctx.addIssue({ code: 'custom', path: ['quarantine_prefix'], message: 'must not contain the integration prefix (every blob would be internal)' });
    }
  });

/** Settings of an Azure Blob integration after validation and defaults. */
export type AzureBlobSettings = z.output<typeof settingsSchema>;

/** The zod schema of the stored settings (input: the JSON as stored; output: with defaults applied). */
export const azureBlobSettingsSchema: z.ZodType<AzureBlobSettings, unknown> = settingsSchema;

/** Where quarantined blobs of an integration go: a container and a name prefix inside it. */
export interface QuarantineLocation {
  container: string;
  /** `""` (the root of a separate container) or a prefix ending in `/`. */
  prefix: string;
  /** True when the quarantine shares the integration's container (its blobs are then internal). */
  sameContainer: boolean;
}

/** The quarantine location the settings name (default: `<prefix>dsx-quarantine/` in the same container). */
export function quarantineLocationOf(s: AzureBlobSettings): QuarantineLocation {
  if (s.quarantine_container !== undefined) return { container: s.quarantine_container, prefix: '', sameContainer: false };
  return { container: s.container, prefix: s.quarantine_prefix ?? `${s.prefix}${DEFAULT_QUARANTINE_PREFIX}`, sameContainer: true };
}

/** The options of the integration's RequestLimiter (the registry creates one per integration). */
export function limitOptionsOf(s: AzureBlobSettings): LimitOptions {
  return { maxInFlight: s.limits.max_in_flight, maxPerSecond: s.limits.max_per_second };
}

/** One line naming the first problem: `settings.<path>: <what is wrong>`. Never echoes a value. */
export function describeIssue(error: z.ZodError, root: string): string {
  const issue = error.issues[0]!;
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys.map((k) => JSON.stringify(k)).join(', ');
    return `${[root, ...issue.path.map(String)].join('.')}: unknown key ${keys}${root === 'settings' ? ' (credentials are not settings: store them as the integration\'s credentials)' : ''}`;
  }
  const where = [root, ...issue.path.map(String)].join('.');
  return `${where}: ${issue.message}`;
}

/** Validates stored settings; throws ConnectorError('configuration') with a one-line message. */
export function parseAzureBlobSettings(input: unknown): AzureBlobSettings {
  const r = settingsSchema.safeParse(input);
  if (!r.success) throw new ConnectorError('configuration', `azure_blob ${describeIssue(r.error, 'settings')}`);
  return r.data;
}
