/**
 * Where things are in the bucket: identities <-> keys, scope roots -> listing prefixes, the quarantine
 * location and the connector's own (internal) keys.
 *
 * An identity is the object key relative to the integration's prefix, verbatim: S3 keys are flat
 * strings, so spaces, `+`, unicode, `//`, a leading `/` and `..` are ordinary characters (S3 never
 * resolves `..`), and an identity can never name a key outside the prefix because the key is the
 * prefix followed by the identity. Scope roots are `/`-separated relative paths as for the filesystem
 * (`""` = the whole integration, `"a/b"` = the keys under `<prefix>a/b/`).
 */
import { createHash, randomUUID } from 'node:crypto';
import { normalizeRelativePath } from '../identity.ts';
import { ConnectorError } from '../types.ts';
import { DEFAULT_QUARANTINE_PREFIX, type S3Settings } from './settings.ts';

/** S3's limit on a key, in UTF-8 bytes. */
export const MAX_KEY_BYTES = 1024;

/** Where probe objects go, under the quarantine location. */
const PROBE_SEGMENT = '.dsx-probe/';
/** Where copies of keys too long for the quarantine prefix go, under the quarantine location. */
const LONG_SEGMENT = '.dsx-long/';

/** The key layout of one integration. */
export class S3KeyLayout {
  /** Bucket of the integration. */
  readonly bucket: string;
  /** Base prefix of the integration (`""` or ending in `/`). */
  readonly prefix: string;
  /** Bucket quarantined objects are copied into (the integration's own bucket by default). */
  readonly quarantineBucket: string;
  /** Key prefix of quarantined objects in `quarantineBucket` (`""` for a separate bucket). */
  readonly quarantinePrefix: string;
  /** True when the quarantine is a prefix of the integration's own bucket (its keys are internal). */
  readonly quarantineInSameBucket: boolean;

  constructor(settings: Pick<S3Settings, 'bucket' | 'prefix' | 'quarantine_bucket' | 'quarantine_prefix'>) {
    this.bucket = settings.bucket;
    this.prefix = settings.prefix;
    this.quarantineInSameBucket = settings.quarantine_bucket === undefined;
    this.quarantineBucket = settings.quarantine_bucket ?? settings.bucket;
    this.quarantinePrefix = this.quarantineInSameBucket ? (settings.quarantine_prefix ?? DEFAULT_QUARANTINE_PREFIX) : '';
  }

  /**
   * The identity of a key, or null for a key outside the integration's prefix, the prefix itself, a
   * folder marker (a key ending in `/`) and the connector's own keys (quarantine, probes). For the
   * monitoring side: event keys (already URL-decoded) map to identities through this.
   */
  identityOfKey(key: string): string | null {
    if (!key.startsWith(this.prefix) || key.length === this.prefix.length) return null;
    if (key.endsWith('/') || this.isInternalKey(key)) return null;
    return key.slice(this.prefix.length);
  }

  /** The key of an identity. Throws ConnectorError('invalid') for an identity that names no key. */
  keyOf(identity: string): string {
    if (typeof identity !== 'string' || identity === '') {
      throw new ConnectorError('invalid', 'an S3 object identity must be a non-empty string');
    }
    if (!identity.isWellFormed()) {
      throw new ConnectorError('invalid', `S3 object identity ${JSON.stringify(identity)} is not valid Unicode (a lone surrogate)`);
    }
    const key = this.prefix + identity;
    const bytes = Buffer.byteLength(key);
    if (bytes > MAX_KEY_BYTES) {
      throw new ConnectorError('invalid', `S3 key of identity ${JSON.stringify(identity.slice(0, 80))}... is ${bytes} bytes; S3 keys are at most ${MAX_KEY_BYTES}`);
    }
    return key;
  }

  /** True for keys the connector keeps for itself: the quarantine prefix in the same bucket (probes included). */
  isInternalKey(key: string): boolean {
    return this.quarantineInSameBucket && key.startsWith(this.quarantinePrefix);
  }

  /** The listing prefix of a scope root (`""` = the integration's prefix). */
  listPrefix(scopeRoot: string): string {
    const scope = normalizeRelativePath(scopeRoot);
    return scope === '' ? this.prefix : `${this.prefix}${scope}/`;
  }

  /**
   * The identity (relative to the integration) of the quarantine area when it lies under `listPrefix`,
   * else null: listing jumps over it instead of walking every quarantined key.
   */
  quarantineAreaUnder(listPrefix: string): string | null {
    if (!this.quarantineInSameBucket || !this.quarantinePrefix.startsWith(listPrefix)) return null;
    return this.quarantinePrefix.startsWith(this.prefix) ? this.quarantinePrefix.slice(this.prefix.length) : this.quarantinePrefix;
  }

  /**
   * Where a copy of `sourceKey` goes in the quarantine bucket: the quarantine prefix, the source key and
   * a collision `suffix`. Where that would pass S3's 1,024 bytes (a long key under a prefix), the source
   * key is replaced by its SHA-256 under `.dsx-long/` (the copy's metadata still names the source).
   */
  quarantineKeyOf(sourceKey: string, suffix = ''): string {
    const key = this.quarantinePrefix + sourceKey + suffix;
    if (Buffer.byteLength(key) <= MAX_KEY_BYTES) return key;
    return `${this.quarantinePrefix}${LONG_SEGMENT}${createHash('sha256').update(sourceKey).digest('hex')}${suffix}`;
  }

  /** A fresh key for a probe object under the quarantine location. */
  probeKey(): string {
    return `${this.quarantinePrefix}${PROBE_SEGMENT}${randomUUID()}`;
  }
}

/**
 * A StartAfter key that sorts after every key beginning with `prefix` that S3 can hold: the prefix
 * followed by as many U+10FFFF (UTF-8 F4 8F BF BF, the largest code point) as fit in 1,024 bytes.
 * Stores that compare UTF-16 code units instead can still list a key past it (U+E000..U+FFFF sort
 * higher there); the listing then meets that key and skips it on its own.
 */
export function keyAfterPrefix(prefix: string): string {
  const room = Math.max(1, Math.floor((MAX_KEY_BYTES - Buffer.byteLength(prefix)) / 4));
  return prefix + '\u{10FFFF}'.repeat(room);
}
