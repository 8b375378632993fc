/**
 * The options of `integration add` for object stores (s3, azure_blob), turned into stored settings and
 * credentials, both checked by the connector's own schemas before anything is written: a bad setting
 * or credential is one line naming the field, never the value. Credentials come from a file
 * (`--credentials-file`), never from the command line (other users can read it with ps).
 */
import fs from 'node:fs';
import { parseAzureCredentials } from '../connectors/azure-blob/credentials.ts';
import { parseAzureBlobSettings } from '../connectors/azure-blob/settings.ts';
import { parseS3Credentials, parseS3Settings } from '../connectors/s3/settings.ts';
import { UsageError } from './usage-error.ts';

/** The options of `integration add` that concern object stores. */
export interface CloudOptions {
  bucket?: string;
  container?: string;
  prefix?: string;
  endpoint?: string;
  region?: string;
  pathStyle?: boolean;
  accountUrl?: string;
  quarantineBucket?: string;
  quarantineContainer?: string;
  quarantinePrefix?: string;
  tagMode?: string;
  eventQueue?: string;
  eventQueueEndpoint?: string;
  credentialsFile?: string;
}

function set(settings: Record<string, unknown>, key: string, value: unknown): void {
  if (value !== undefined) settings[key] = value;
}

/** Reads `--credentials-file`: a JSON object. The message never shows the file's content. */
export function readCredentialsFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new UsageError(`cannot read --credentials-file ${file}: ${e.code ?? e.message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new UsageError(`--credentials-file ${file} is not valid JSON (expected an object such as {"accessKeyId": ..., "secretAccessKey": ...})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new UsageError(`--credentials-file ${file} must hold a JSON object`);
  }
  return value as Record<string, unknown>;
}

/** Runs a connector schema check, turning its configuration error into a UsageError. */
function checked(fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/**
 * Settings (and credentials, when a file is given) of an s3 or azure_blob integration from the command
 * line merged into `settings` (from --settings), validated by the connector's schemas.
 */
export function cloudIntegration(kind: 's3' | 'azure_blob', o: CloudOptions, settings: Record<string, unknown>): { settings: Record<string, unknown>; credentials: Record<string, unknown> | null } {
  if (kind === 's3') {
    if (o.container || o.accountUrl || o.quarantineContainer) throw new UsageError('--container, --account-url and --quarantine-container are for azure_blob integrations');
    set(settings, 'bucket', o.bucket);
    if (typeof settings.bucket !== 'string') throw new UsageError('an s3 integration needs --bucket NAME');
    set(settings, 'prefix', o.prefix);
    set(settings, 'endpoint', o.endpoint);
    set(settings, 'region', o.region);
    if (o.pathStyle) settings.path_style = true;
    set(settings, 'quarantine_bucket', o.quarantineBucket);
    set(settings, 'quarantine_prefix', o.quarantinePrefix);
    set(settings, 'tag_mode', o.tagMode);
    set(settings, 'event_queue_url', o.eventQueue);
    set(settings, 'event_queue_endpoint', o.eventQueueEndpoint);
  } else {
    if (o.bucket || o.endpoint || o.region || o.pathStyle || o.quarantineBucket || o.eventQueueEndpoint) {
      throw new UsageError('--bucket, --endpoint, --region, --path-style, --quarantine-bucket and --event-queue-endpoint are for s3 integrations');
    }
    set(settings, 'container', o.container);
    if (typeof settings.container !== 'string') throw new UsageError('an azure_blob integration needs --container NAME');
    set(settings, 'prefix', o.prefix);
    set(settings, 'account_url', o.accountUrl);
    set(settings, 'quarantine_container', o.quarantineContainer);
    set(settings, 'quarantine_prefix', o.quarantinePrefix);
    set(settings, 'tag_mode', o.tagMode);
    set(settings, 'event_queue_url', o.eventQueue);
  }
  const credentials = o.credentialsFile ? readCredentialsFile(o.credentialsFile) : null;
  if (kind === 's3') {
    checked(() => parseS3Settings(settings));
    checked(() => parseS3Credentials(credentials));
  } else {
    checked(() => parseAzureBlobSettings(settings));
    checked(() => parseAzureCredentials(credentials));
  }
  return { settings, credentials };
}
