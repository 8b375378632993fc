/**
 * Reads: `GetObject` streamed (the SDK's body stream, with its ContentLength, ETag, VersionId and
 * LastModified) and `HeadObject` for metadata. ETags are returned without their quotes, the form S3
 * event notifications carry, so that events and listings dedupe on the same string.
 *
 * Versions: ListObjectsV2 has no version ids, so enumeration records none; the version actually read is
 * the one GetObject answers with (`x-amz-version-id`, on versioned buckets), returned by `open` for the
 * caller to record with the scan result, and given back to `remove`/`quarantine`/`tag`.
 */
import type { Readable } from 'node:stream';
import { GetObjectCommand, HeadBucketCommand, HeadObjectCommand, type HeadObjectCommandOutput } from '@aws-sdk/client-s3';
import { ConnectorError, type ObjectVersion, type OpenedObject } from '../types.ts';
import { isNotFound, toConnectorError } from './errors.ts';
import type { S3Requests } from './requests.ts';

/** An ETag without surrounding quotes (and without a weak `W/` marker). */
export function unquoteEtag(etag: string | null | undefined): string | null {
  if (!etag) return null;
  return etag.replace(/^W\//, '').replace(/^"(.*)"$/, '$1');
}

/** An ETag as conditional headers want it: quoted. */
export function quoteEtag(etag: string): string {
  return `"${unquoteEtag(etag)}"`;
}

/** True when two ETags name the same content (quotes ignored). */
export function sameEtag(a: string | null | undefined, b: string | null | undefined): boolean {
  return !!a && !!b && unquoteEtag(a) === unquoteEtag(b);
}

/** What HeadObject says of one object version. */
export interface HeadInfo {
  size: number | null;
  etag: string | null;
  versionId: string | null;
  mtime: string | null;
  contentType: string | undefined;
  /** User metadata (`x-amz-meta-*`, names lowercased by S3). */
  metadata: Record<string, string>;
  /** True when the object is encrypted with SSE-KMS or SSE-C (its ETag is then not an MD5). */
  opaqueEtag: boolean;
}

function headInfo(out: HeadObjectCommandOutput): HeadInfo {
  return {
    size: out.ContentLength ?? null,
    etag: unquoteEtag(out.ETag),
    versionId: out.VersionId ?? null,
    mtime: out.LastModified?.toISOString() ?? null,
    contentType: out.ContentType,
    metadata: out.Metadata ?? {},
    opaqueEtag: out.ServerSideEncryption === 'aws:kms' || out.ServerSideEncryption === 'aws:kms:dsse' || out.SSECustomerAlgorithm !== undefined,
  };
}

/**
 * HeadObject of `key` (that version when given), or null when it does not exist. A HEAD answer has no
 * body, so a missing bucket also reads as a bare 404: the bucket is then checked, and a missing bucket
 * is ConnectorError('configuration') rather than "the object is gone".
 */
export async function headObject(req: S3Requests, bucket: string, key: string, versionId?: string | null): Promise<HeadInfo | null> {
  const target = { op: 'HeadObject', bucket, key, action: versionId ? 's3:GetObjectVersion' : 's3:GetObject' };
  try {
    return headInfo(await req.run((c) => c.send(new HeadObjectCommand({ Bucket: bucket, Key: key, ...(versionId ? { VersionId: versionId } : {}) }))));
  } catch (err) {
    // 405 answers a HEAD of a version that is a delete marker: that version holds no object.
    if (!isNotFound(err) && !(versionId && (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 405)) {
      throw toConnectorError(err, target);
    }
  }
  await requireBucket(req, bucket);
  return null;
}

/** Throws ConnectorError('configuration') when `bucket` does not exist (or is not reachable with these credentials). */
export async function requireBucket(req: S3Requests, bucket: string): Promise<void> {
  try {
    await req.run((c) => c.send(new HeadBucketCommand({ Bucket: bucket })));
  } catch (err) {
    if (isNotFound(err)) {
      throw new ConnectorError('configuration', `HeadBucket s3://${bucket}: bucket ${bucket} does not exist: check the integration's bucket, region and endpoint`, { cause: err });
    }
    throw toConnectorError(err, { op: 'HeadBucket', bucket, action: 's3:ListBucket' });
  }
}

/** GetObject streamed: the given version when asked, else the current one. */
export async function openObject(req: S3Requests, bucket: string, key: string, version?: ObjectVersion): Promise<OpenedObject> {
  const versionId = version?.versionId ?? undefined;
  const target = { op: 'GetObject', bucket, key, action: versionId ? 's3:GetObjectVersion' : 's3:GetObject' };
  try {
    const out = await req.runStream(new GetObjectCommand({ Bucket: bucket, Key: key, ...(versionId ? { VersionId: versionId } : {}) }));
    return {
      stream: out.Body as Readable,
      size: out.ContentLength ?? null,
      etag: unquoteEtag(out.ETag),
      versionId: out.VersionId ?? null,
      mtime: out.LastModified?.toISOString() ?? null,
    };
  } catch (err) {
    throw toConnectorError(err, target);
  }
}
