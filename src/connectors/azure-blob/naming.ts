/**
 * Identities, blob names and ETags of an Azure Blob integration.
 *
 * - identity: the blob name relative to the integration's `prefix`, verbatim (spaces, `+`, `%`,
 *   unicode, `//`). Azurite (and tools on Windows) turn a backslash into `/`, so such a blob lists
 *   with `/` and that is its identity.
 * - scope root: a `/`-separated relative path; `""` is the whole integration, `"a/b"` the blobs under
 *   `<prefix>a/b/`.
 * - internal blobs: the quarantine prefix when it lies inside the integration's container (and so the
 *   probe blobs written there): never listed as objects, and their storage events are ignored.
 *
 * The SDK builds URLs with `new URL`, which resolves `.` and `..` path segments: `a/../b` would address
 * blob `b`, outside the prefix. Identities with such segments are refused (`escape`).
 */
import { randomUUID } from 'node:crypto';
import { normalizeRelativePath } from '../identity.ts';
import { ConnectorError } from '../types.ts';
import { MAX_BLOB_NAME_LENGTH, quarantineLocationOf, type AzureBlobSettings, type QuarantineLocation } from './settings.ts';

/** Name prefix of the connector's probe blobs, inside the quarantine location. */
export const PROBE_NAME = '.dsx-probe-';

/** What a listed blob name is to the integration. */
export type BlobClass =
  | { kind: 'object'; identity: string }
  | { kind: 'internal'; identity: string }
  | { kind: 'dot_segments'; identity: string }
  | { kind: 'outside' };

function hasDotSegments(name: string): boolean {
  return name.split('/').some((seg) => seg === '.' || seg === '..');
}

/** ETags as HTTP carries them, quoted: listings return `0x8D...`, properties `"0x8D..."`, Event Grid either. */
export function quoteEtag(etag: string): string {
  return etag.startsWith('"') || etag.startsWith('W/') ? etag : `"${etag}"`;
}

/** True when two ETags name the same content, whatever their quoting. */
export function sameEtag(a: string | null | undefined, b: string | null | undefined): boolean {
  return !!a && !!b && quoteEtag(a) === quoteEtag(b);
}

/** Maps between identities and blob names for one integration's settings. */
export class BlobNaming {
  readonly container: string;
  /** `""` or a prefix ending in `/`. */
  readonly prefix: string;
  readonly quarantine: QuarantineLocation;

  constructor(settings: AzureBlobSettings) {
    this.container = settings.container;
    this.prefix = settings.prefix;
    this.quarantine = quarantineLocationOf(settings);
  }

  /** Classifies a blob name of the integration's container (see the module comment). */
  classify(name: string): BlobClass {
    if (!name.startsWith(this.prefix) || name.length === this.prefix.length) return { kind: 'outside' };
    const identity = name.slice(this.prefix.length);
    if (this.quarantine.sameContainer && name.startsWith(this.quarantine.prefix)) return { kind: 'internal', identity };
    if (hasDotSegments(identity)) return { kind: 'dot_segments', identity };
    return { kind: 'object', identity };
  }

  /** The identity of a blob of the integration's container; null outside the prefix and for internal blobs. */
  identityOfBlob(name: string): string | null {
    const c = this.classify(name);
    return c.kind === 'object' ? c.identity : null;
  }

  /** True for identities the connector keeps for itself (its quarantine prefix, its probes). */
  isInternal(identity: string): boolean {
    return this.quarantine.sameContainer && `${this.prefix}${identity}`.startsWith(this.quarantine.prefix);
  }

  /**
   * The blob name of an identity. Throws `invalid` for an empty or too long identity and `escape` for
   * one with `.`/`..` segments (which would address a blob outside the prefix).
   */
  blobOf(identity: string): string {
    if (typeof identity !== 'string' || identity === '') {
      throw new ConnectorError('invalid', `blob identity must be a non-empty string, got ${JSON.stringify(identity)}`);
    }
    if (hasDotSegments(identity)) {
      throw new ConnectorError('escape', `identity ${JSON.stringify(identity)} has "." or ".." segments, which would address a blob outside the prefix`);
    }
    const name = `${this.prefix}${identity}`;
    if (name.length > MAX_BLOB_NAME_LENGTH) {
      throw new ConnectorError('invalid', `blob name of ${JSON.stringify(identity)} is ${name.length} characters; Azure allows ${MAX_BLOB_NAME_LENGTH}`);
    }
    return name;
  }

  /** The listing prefix of a scope root: `<prefix>` or `<prefix><root>/`. Throws `escape` for `..`. */
  scopePrefix(scopeRoot: string): string {
    const root = normalizeRelativePath(scopeRoot);
    return root === '' ? this.prefix : `${this.prefix}${root}/`;
  }

  /**
   * The quarantine blob name for an identity: `<quarantine prefix><identity>`, or with `suffix`
   * appended (`report.pdf.dsx-1a2b3c4d`) when that name is taken by other evidence.
   */
  quarantineName(identity: string, suffix?: string): string {
    const name = `${this.quarantine.prefix}${identity}${suffix ? `.dsx-${suffix}` : ''}`;
    if (name.length > MAX_BLOB_NAME_LENGTH) {
      throw new ConnectorError('invalid', `quarantine name for ${JSON.stringify(identity)} would be ${name.length} characters; Azure allows ${MAX_BLOB_NAME_LENGTH}`);
    }
    return name;
  }

  /** A fresh probe blob name inside the quarantine location. */
  probeName(): string {
    return `${this.quarantine.prefix}${PROBE_NAME}${randomUUID()}`;
  }
}
