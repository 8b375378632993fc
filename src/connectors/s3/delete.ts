/**
 * Deleting the scanned version of an object, never a newer one.
 *
 * - A version id given: `DeleteObject` with that `VersionId` (on a versioned bucket this removes that
 *   version for good; a newer upload is another version and stays).
 * - Only an ETag given: HeadObject first, and an object whose current ETag differs is `skipped` (it
 *   changed since the scan); then `DeleteObject` with `If-Match: <etag>`, which closes the window
 *   between the two calls on AWS (general purpose buckets honour conditional deletes since 2024; a 412
 *   there is `skipped` too). Stores that ignore `If-Match` on DELETE (fauxqs, s3rver) still get the
 *   HEAD check; one that refuses it with 501 is asked again without it.
 * - Neither: the current object is deleted.
 * A missing object is `already_done` (S3 itself answers 204 for a missing key, so the HEAD decides).
 */
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import type { ActionResult, ObjectVersion } from '../types.ts';
import { isNotFound, isNotImplemented, isPreconditionFailed, toConnectorError } from './errors.ts';
import { headObject, quoteEtag, sameEtag, unquoteEtag } from './reads.ts';
import type { S3Requests } from './requests.ts';

/** Why an object was left in place: it is not the version that was scanned. */
export function changedDetail(scannedEtag: string, currentEtag: string | null): string {
  return `the object changed since it was scanned (ETag ${currentEtag ?? 'unknown'}, scanned ${unquoteEtag(scannedEtag)}): left in place`;
}

/** Deletes one object version (see the module comment). */
export async function deleteObject(req: S3Requests, bucket: string, key: string, version: ObjectVersion = {}): Promise<ActionResult> {
  const versionId = version.versionId ?? null;
  const head = await headObject(req, bucket, key, versionId);
  if (head === null) return { status: 'already_done', detail: versionId ? `version ${versionId} does not exist` : 'object does not exist' };
  if (!versionId && version.etag && !sameEtag(head.etag, version.etag)) {
    return { status: 'skipped', detail: changedDetail(version.etag, head.etag) };
  }
  const ifMatch = !versionId && version.etag ? quoteEtag(version.etag) : undefined;
  return deleteKnown(req, bucket, key, versionId, ifMatch, version.etag ?? null);
}

/**
 * DeleteObject of `key` (that version, or under `If-Match`), once its existence and version were
 * checked. Shared by quarantine, which deletes its source the same way.
 */
export async function deleteKnown(req: S3Requests, bucket: string, key: string, versionId: string | null, ifMatch: string | undefined, scannedEtag: string | null): Promise<ActionResult> {
  const target = { op: 'DeleteObject', bucket, key, action: versionId ? 's3:DeleteObjectVersion' : 's3:DeleteObject' };
  const send = (withCondition: boolean) =>
    req.run((c) =>
      c.send(new DeleteObjectCommand({ Bucket: bucket, Key: key, ...(versionId ? { VersionId: versionId } : {}), ...(withCondition && ifMatch ? { IfMatch: ifMatch } : {}) })),
    );
  try {
    try {
      await send(true);
    } catch (err) {
      if (!ifMatch || !isNotImplemented(err)) throw err;
      await send(false);
    }
  } catch (err) {
    if (isNotFound(err)) return { status: 'already_done', detail: 'object does not exist' };
    if (isPreconditionFailed(err)) {
      const current = await headObject(req, bucket, key);
      return { status: 'skipped', detail: changedDetail(scannedEtag ?? ifMatch ?? '', current?.etag ?? null) };
    }
    throw toConnectorError(err, target);
  }
  return { status: 'done', detail: versionId ? `deleted version ${versionId}` : 'deleted' };
}
