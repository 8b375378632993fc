/**
 * The S3 connector (AWS SDK v3): one integration is a bucket, optionally a prefix in it, on AWS or an
 * S3-compatible store. Stateless between calls: every call is one or a few requests, each through the
 * integration's RequestLimiter, and nothing is cached but the SDK client.
 *
 * Identities are keys relative to the integration's prefix (layout.ts); enumeration pages on S3's
 * continuation tokens (listing.ts); reads stream GetObject (reads.ts); remediation deletes and
 * quarantines the scanned version only (delete.ts, quarantine.ts, copy.ts); verdict tags merge into the
 * object's own (tags.ts); `probe` tries each capability (probe.ts).
 */
import type { Logger } from '../../log.ts';
import type { RequestLimiter } from '../rate-limit.ts';
import type {
  ActionResult,
  Connector,
  ObjectInfo,
  ObjectVersion,
  OpenedObject,
  Page,
  ProbeResult,
  QuarantineOptions,
} from '../types.ts';
import { makeS3Client } from './client.ts';
import { DEFAULT_PART_BYTES, MAX_SINGLE_COPY_BYTES, type CopyTuning } from './copy.ts';
import { deleteObject } from './delete.ts';
import { S3KeyLayout } from './layout.ts';
import { listPage } from './listing.ts';
import { probe } from './probe.ts';
import { quarantineObject, type QuarantineHooks } from './quarantine.ts';
import { headObject, openObject } from './reads.ts';
import { S3Requests, type ThrottleTuning } from './requests.ts';
import { parseS3Credentials, parseS3Settings, type S3Settings } from './settings.ts';
import { tagObject } from './tags.ts';

/** How an S3 connector is built. `settings` and `credentials` are validated here. */
export interface S3ConnectorOptions {
  /** The integration's stored settings (see S3SettingsSchema). */
  settings: unknown;
  /** `{accessKeyId, secretAccessKey, sessionToken?}`, or null/undefined for the SDK's default chain. */
  credentials?: unknown;
  /** The integration's limiter, shared by every job of the integration in this process. */
  limiter: RequestLimiter;
  log?: Logger;
  /** Objects larger than this are quarantined with a multipart copy (default 5 GB, S3's single-copy limit). */
  multipartThreshold?: number;
  /** Part size of multipart copies (default 256 MiB; S3 wants at least 5 MiB for all parts but the last). */
  partSize?: number;
  /** Tuning of the throttling retry (tries, pauses; a sleep to observe them). */
  throttle?: ThrottleTuning;
  /** Step hooks of quarantine (crash tests). */
  quarantineHooks?: QuarantineHooks;
}

/**
 * Connector for one S3 integration. Validates its settings and credentials at construction
 * (ConnectorError('configuration') with one line naming the field); `close()` destroys the SDK client.
 */
export class S3Connector implements Connector {
  readonly kind = 's3';
  /** The validated settings, defaults applied. */
  readonly settings: S3Settings;
  /** Where identities, scopes and the quarantine are in the bucket. */
  readonly layout: S3KeyLayout;
  readonly #req: S3Requests;
  readonly #tuning: CopyTuning;
  readonly #hooks: QuarantineHooks | undefined;

  constructor(opts: S3ConnectorOptions) {
    this.settings = parseS3Settings(opts.settings);
    const credentials = parseS3Credentials(opts.credentials);
    this.layout = new S3KeyLayout(this.settings);
    const client = makeS3Client(this.settings, credentials, { maxSockets: opts.limiter.maxInFlight });
    this.#req = new S3Requests(client, opts.limiter, opts.log?.child({ connector: 's3', bucket: this.settings.bucket }), opts.throttle);
    this.#tuning = {
      multipartThreshold: opts.multipartThreshold ?? MAX_SINGLE_COPY_BYTES,
      partSize: opts.partSize ?? DEFAULT_PART_BYTES,
    };
    this.#hooks = opts.quarantineHooks;
  }

  /** The identity of an (URL-decoded) event key; null outside the prefix, for folder markers and internal keys. */
  identityOfKey(key: string): string | null {
    return this.layout.identityOfKey(key);
  }

  identityOfEvent(name: string): string | null {
    return this.layout.identityOfKey(name);
  }

  /** The key of an identity. */
  keyOf(identity: string): string {
    return this.layout.keyOf(identity);
  }

  isInternal(identity: string): boolean {
    return typeof identity === 'string' && identity !== '' && this.layout.isInternalKey(this.layout.prefix + identity);
  }

  listPage(scopeRoot: string, cursor: string | null, pageSize: number): Promise<Page> {
    return listPage(this.#req, this.layout, scopeRoot, cursor, pageSize);
  }

  open(identity: string, version?: ObjectVersion): Promise<OpenedObject> {
    return openObject(this.#req, this.layout.bucket, this.layout.keyOf(identity), version);
  }

  async stat(identity: string): Promise<ObjectInfo | null> {
    const head = await headObject(this.#req, this.layout.bucket, this.layout.keyOf(identity));
    return head === null ? null : { identity, size: head.size, etag: head.etag, mtime: head.mtime, versionId: head.versionId };
  }

  remove(identity: string, version?: ObjectVersion): Promise<ActionResult> {
    return deleteObject(this.#req, this.layout.bucket, this.layout.keyOf(identity), version);
  }

  quarantine(identity: string, opts?: QuarantineOptions): Promise<ActionResult> {
    return quarantineObject({ req: this.#req, layout: this.layout, tuning: this.#tuning, hooks: this.#hooks }, this.layout.keyOf(identity), opts);
  }

  async tag(identity: string, tags: Record<string, string>, version?: ObjectVersion): Promise<ActionResult> {
    if (this.settings.tag_mode === 'none') return { status: 'not_supported', detail: 'tag_mode is none for this integration' };
    return tagObject(this.#req, this.layout.bucket, this.layout.keyOf(identity), tags, version);
  }

  probe(scopeRoot: string): Promise<ProbeResult[]> {
    return probe({ req: this.#req, layout: this.layout, tagMode: this.settings.tag_mode }, scopeRoot);
  }

  async close(): Promise<void> {
    this.#req.client.destroy();
  }
}
