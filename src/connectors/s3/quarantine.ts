/**
 * Quarantine: copy the scanned version to the quarantine location, verify the copy, and only then
 * delete the source (that version).
 *
 * - Destination: `<quarantine_prefix><key>` in the same bucket, or `<key>` in `quarantine_bucket`.
 *   A destination taken by another object is never overwritten: the next candidate carries a suffix
 *   derived from the decision's key (`.dsx-<sha256 of key, 16 hex>`), then random ones, and the detail
 *   names where the object went.
 * - The copy's metadata carries the decision's key (`x-amz-meta-dsx-quarantine-key`), the source and
 *   its version, so a retry after a crash finds its own copy (at the plain or the key-derived name):
 *   `already_done`, and no second copy. Without a decision key a retry cannot know its earlier copy.
 * - Verification: the copy's length equals the source's, its metadata names this decision, and its
 *   ETag equals the source's where both are plain MD5s (single-part, not SSE-KMS/SSE-C; a multipart
 *   copy's ETag is an MD5 of part MD5s and is not comparable). A copy that fails verification is
 *   removed again and the call throws; the source stays.
 * - A source that changed since the scan (ETag, when no version id is known) is `skipped`; so is one
 *   that changed between the copy and the delete (the copy of the scanned version stays as evidence).
 */
import { createHash, randomUUID } from 'node:crypto';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import { ConnectorError, type ActionResult, type QuarantineOptions } from '../types.ts';
import { copyObject, type CopyTuning } from './copy.ts';
import { changedDetail, deleteKnown } from './delete.ts';
import { isPreconditionFailed, toConnectorError } from './errors.ts';
import type { S3KeyLayout } from './layout.ts';
import { headObject, quoteEtag, sameEtag, type HeadInfo } from './reads.ts';
import type { S3Requests } from './requests.ts';

/** Metadata names on quarantine copies (S3 lowercases them). */
export const QUARANTINE_META = {
  key: 'dsx-quarantine-key',
  sourceBucket: 'dsx-source-bucket',
  sourceKey: 'dsx-source-key',
  sourceEtag: 'dsx-source-etag',
  sourceVersionId: 'dsx-source-version-id',
  quarantinedAt: 'dsx-quarantined-at',
} as const;

/** S3's limit on user metadata: keys and values together, in UTF-8 bytes. */
const METADATA_BUDGET_BYTES = 2048;
/** Destinations tried before giving up (the plain name, the key-derived one, then random ones). */
const MAX_CANDIDATES = 6;

/** Test hooks: called between steps, e.g. to simulate a crash after the copy. */
export interface QuarantineHooks {
  /** After the copy was made and before it is verified and the source deleted. */
  afterCopy?(destination: { bucket: string; key: string }): Promise<void> | void;
}

/** What a quarantine needs from its connector. */
export interface QuarantineContext {
  req: S3Requests;
  layout: S3KeyLayout;
  tuning: CopyTuning;
  hooks?: QuarantineHooks;
  now?: () => Date;
}

/** The collision suffix of candidate `n`: none, then the decision's own, then random ones. */
function suffixOf(n: number, decision: string | null): string {
  if (n === 0) return '';
  if (n === 1 && decision) return `.dsx-${createHash('sha256').update(decision).digest('hex').slice(0, 16)}`;
  return `.dsx-${randomUUID()}`;
}

function byteLength(entries: Record<string, string>): number {
  let n = 0;
  for (const [k, v] of Object.entries(entries)) n += Buffer.byteLength(k) + Buffer.byteLength(v);
  return n;
}

/**
 * The copy's metadata: ours first, then the source's own entries while they fit S3's 2 KB
 * (the source key only where it fits; it is in the destination name anyway unless that was hashed).
 */
export function quarantineMetadata(src: HeadInfo, source: { bucket: string; key: string }, decision: string | null, at: Date): { metadata: Record<string, string>; dropped: string[] } {
  const metadata: Record<string, string> = {
    ...(decision ? { [QUARANTINE_META.key]: decision } : {}),
    [QUARANTINE_META.sourceBucket]: source.bucket,
    ...(src.etag ? { [QUARANTINE_META.sourceEtag]: src.etag } : {}),
    ...(src.versionId ? { [QUARANTINE_META.sourceVersionId]: src.versionId } : {}),
    [QUARANTINE_META.quarantinedAt]: at.toISOString(),
  };
  const dropped: string[] = [];
  const encodedKey = encodeURIComponent(source.key);
  if (byteLength(metadata) + QUARANTINE_META.sourceKey.length + encodedKey.length <= METADATA_BUDGET_BYTES) {
    metadata[QUARANTINE_META.sourceKey] = encodedKey;
  } else {
    dropped.push(QUARANTINE_META.sourceKey);
  }
  for (const [k, v] of Object.entries(src.metadata)) {
    if (k in metadata) continue;
    if (byteLength(metadata) + Buffer.byteLength(k) + Buffer.byteLength(v) > METADATA_BUDGET_BYTES) dropped.push(k);
    else metadata[k] = v;
  }
  return { metadata, dropped };
}

/** Why `copy` is not a verified copy of `src` by this decision, or null when it is. */
export function verifyCopy(copy: HeadInfo, src: HeadInfo, decision: string | null, multipart: boolean): string | null {
  if (copy.size !== src.size) return `its length ${copy.size} differs from the source's ${src.size}`;
  if (decision && copy.metadata[QUARANTINE_META.key] !== decision) return 'its metadata does not name this decision';
  if (src.etag && copy.metadata[QUARANTINE_META.sourceEtag] !== undefined && copy.metadata[QUARANTINE_META.sourceEtag] !== src.etag) {
    return `it is a copy of another version (ETag ${copy.metadata[QUARANTINE_META.sourceEtag]})`;
  }
  const md5 = /^[0-9a-f]{32}$/;
  const comparable = !multipart && !src.opaqueEtag && !copy.opaqueEtag && md5.test(src.etag ?? '') && md5.test(copy.etag ?? '');
  if (comparable && copy.etag !== src.etag) return `its ETag ${copy.etag} differs from the source's ${src.etag}`;
  return null;
}

/** Looks for this decision's copy at the deterministic names (the plain one and the key-derived one). */
async function findOwnCopy(ctx: QuarantineContext, sourceKey: string, decision: string): Promise<string | null> {
  const { req, layout } = ctx;
  for (let n = 0; n < 2; n++) {
    const key = layout.quarantineKeyOf(sourceKey, suffixOf(n, decision));
    const copy = await headObject(req, layout.quarantineBucket, key);
    if (copy !== null && copy.metadata[QUARANTINE_META.key] === decision) return key;
  }
  return null;
}

/** Quarantines the object of `sourceKey` (see the module comment). */
export async function quarantineObject(ctx: QuarantineContext, sourceKey: string, opts: QuarantineOptions = {}): Promise<ActionResult> {
  const { req, layout } = ctx;
  const qBucket = layout.quarantineBucket;
  const where = (key: string) => `s3://${qBucket}/${key}`;
  if (layout.isInternalKey(sourceKey)) return { status: 'already_done', detail: 'the object is inside the quarantine area' };
  // Metadata values travel as HTTP headers: the decision key is kept URL-encoded (ASCII).
  const decision = opts.key ? encodeURIComponent(opts.key) : null;
  const versionId = opts.versionId ?? null;

  const src = await headObject(req, layout.bucket, sourceKey, versionId);
  if (src === null) {
    const found = decision ? await findOwnCopy(ctx, sourceKey, decision) : null;
    if (found) return { status: 'already_done', detail: `already in quarantine at ${where(found)}` };
    throw new ConnectorError('not_found', `s3://${layout.bucket}/${sourceKey} does not exist${decision ? ' and no quarantine copy of this decision was found' : ''}`);
  }
  if (!versionId && opts.etag && !sameEtag(src.etag, opts.etag)) {
    const found = decision ? await findOwnCopy(ctx, sourceKey, decision) : null;
    if (found) return { status: 'already_done', detail: `already in quarantine at ${where(found)}; the source changed since and was left in place` };
    return { status: 'skipped', detail: changedDetail(opts.etag, src.etag) };
  }
  // The version copied is the one deleted: on a versioned bucket the HEAD names the current version
  // (whose ETag matched the scan), and deleting exactly it leaves no noncurrent copy of the malware.
  // Without versions the delete is conditional on the ETag that was copied.
  const srcVersionId = versionId ?? src.versionId;
  const deleteSource = async (copyKey: string, earlier: boolean): Promise<ActionResult> => {
    const r = await deleteKnown(req, layout.bucket, sourceKey, srcVersionId, srcVersionId || !src.etag ? undefined : quoteEtag(src.etag), src.etag);
    if (r.status === 'skipped') return { status: 'skipped', detail: `copied to ${where(copyKey)}, but ${r.detail}` };
    return earlier
      ? { status: 'already_done', detail: `already in quarantine at ${where(copyKey)} (an earlier attempt's copy); source deleted` }
      : { status: 'done', detail: `moved to ${where(copyKey)}` };
  };

  for (let n = 0; n < MAX_CANDIDATES; n++) {
    const destKey = layout.quarantineKeyOf(sourceKey, suffixOf(n, decision));
    const existing = await headObject(req, qBucket, destKey);
    if (existing !== null) {
      if (decision && existing.metadata[QUARANTINE_META.key] === decision && verifyCopy(existing, src, decision, existing.etag?.includes('-') ?? false) === null) {
        return deleteSource(destKey, true);
      }
      continue; // another object's name: never overwritten
    }
    const { metadata } = quarantineMetadata(src, { bucket: layout.bucket, key: sourceKey }, decision, ctx.now?.() ?? new Date());
    const copyTarget = {
      op: (src.size ?? 0) > ctx.tuning.multipartThreshold ? 'multipart copy (UploadPartCopy)' : 'CopyObject',
      bucket: qBucket,
      key: destKey,
      action: 's3:GetObject on the source and s3:PutObject on the quarantine location',
    };
    let multipart: boolean;
    try {
      const size = src.size ?? 0;
      ({ multipart } = await copyObject(
        req,
        { bucket: layout.bucket, key: sourceKey, versionId: srcVersionId, etag: src.etag, size, contentType: src.contentType },
        { bucket: qBucket, key: destKey, metadata },
        ctx.tuning,
      ));
    } catch (err) {
      if (!isPreconditionFailed(err)) throw toConnectorError(err, copyTarget);
      // 412: the source changed (copy-source-if-match) or the destination was taken meanwhile (if-none-match).
      const now = await headObject(req, layout.bucket, sourceKey, versionId);
      if (now === null || !sameEtag(now.etag, src.etag)) return { status: 'skipped', detail: changedDetail(src.etag ?? '', now?.etag ?? null) };
      continue;
    }
    await ctx.hooks?.afterCopy?.({ bucket: qBucket, key: destKey });

    const copy = await headObject(req, qBucket, destKey);
    const problem = copy === null ? 'it is not there' : verifyCopy(copy, src, decision, multipart);
    if (problem !== null) {
      if (copy !== null && (!decision || copy.metadata[QUARANTINE_META.key] === decision)) {
        await req.run((c) => c.send(new DeleteObjectCommand({ Bucket: qBucket, Key: destKey }))).catch(() => {});
      }
      throw new ConnectorError('transient', `quarantine copy ${where(destKey)} of s3://${layout.bucket}/${sourceKey} did not verify (${problem}); the source was kept`);
    }
    return deleteSource(destKey, false);
  }
  throw new ConnectorError('transient', `no free quarantine key for s3://${layout.bucket}/${sourceKey} after ${MAX_CANDIDATES} tries; the source was kept`);
}
