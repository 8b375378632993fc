/**
 * Server-side copies for quarantine: one `CopyObject` up to the multipart threshold (S3's single copy
 * stops at 5 GB), else `CreateMultipartUpload` + `UploadPartCopy` of byte ranges + `CompleteMultipartUpload`,
 * aborted on any failure so no partial upload is left behind. Every request names the source version
 * exactly (`versionId` in the copy source, or `x-amz-copy-source-if-match` with the scanned ETag), and
 * the destination is written only if absent (`If-None-Match: *`, honoured by AWS; stores that ignore
 * it are covered by the HEAD before the copy).
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  UploadPartCopyCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import { isNotImplemented, toConnectorError } from './errors.ts';
import { quoteEtag, unquoteEtag } from './reads.ts';
import type { S3Requests } from './requests.ts';

/** S3's largest single CopyObject (5 GB) and default multipart threshold. */
export const MAX_SINGLE_COPY_BYTES = 5 * 1024 ** 3;
/** Default part size of a multipart copy. */
export const DEFAULT_PART_BYTES = 256 * 1024 ** 2;
/** S3's most parts per upload: a larger object gets larger parts. */
const MAX_PARTS = 10_000;
/** Parts copied at once (each also takes a limiter slot). */
const PART_CONCURRENCY = 4;

/** The exact source of a copy. */
export interface CopySource {
  bucket: string;
  key: string;
  versionId: string | null;
  etag: string | null;
  size: number;
  contentType?: string;
}

/** Where a copy goes, and what it carries. */
export interface CopyDestination {
  bucket: string;
  key: string;
  metadata: Record<string, string>;
}

/** How copies are made. */
export interface CopyTuning {
  /** Objects larger than this are copied in parts (default 5 GB). */
  multipartThreshold: number;
  /** Part size of a multipart copy (default 256 MiB; raised so that no copy needs over 10,000 parts). */
  partSize: number;
}

/** `CopySource` as S3 wants it: bucket/key URL-encoded segment by segment (so `/` stays), then the version. */
export function copySourceOf(src: Pick<CopySource, 'bucket' | 'key' | 'versionId'>): string {
  const path = `${src.bucket}/${src.key.split('/').map(encodeURIComponent).join('/')}`;
  return src.versionId ? `${path}?versionId=${encodeURIComponent(src.versionId)}` : path;
}

/** The outcome of a copy: the copy's ETag and how it was made. */
export interface CopyResult {
  etag: string | null;
  multipart: boolean;
}

/**
 * Sends a write with `If-None-Match: *`, again without it where the store answers 501 for the
 * condition (the caller checked the destination was free just before).
 */
async function withIfNoneMatch<T>(send: (condition: { IfNoneMatch?: string }) => Promise<T>): Promise<T> {
  try {
    return await send({ IfNoneMatch: '*' });
  } catch (err) {
    if (!isNotImplemented(err)) throw err;
    return send({});
  }
}

/** Copies `src` to `dest` (see the module comment). Raw SDK errors of the copy itself propagate. */
export async function copyObject(req: S3Requests, src: CopySource, dest: CopyDestination, tuning: CopyTuning): Promise<CopyResult> {
  const condition = !src.versionId && src.etag ? { CopySourceIfMatch: quoteEtag(src.etag) } : {};
  if (src.size <= tuning.multipartThreshold) {
    const out = await withIfNoneMatch((ifNoneMatch) =>
      req.run((c) =>
        c.send(
          new CopyObjectCommand({
            Bucket: dest.bucket,
            Key: dest.key,
            CopySource: copySourceOf(src),
            ...condition,
            MetadataDirective: 'REPLACE',
            Metadata: dest.metadata,
            ...(src.contentType ? { ContentType: src.contentType } : {}),
            ...ifNoneMatch,
          }),
        ),
      ),
    );
    return { etag: unquoteEtag(out.CopyObjectResult?.ETag), multipart: false };
  }
  return multipartCopy(req, src, dest, tuning, condition);
}

async function multipartCopy(req: S3Requests, src: CopySource, dest: CopyDestination, tuning: CopyTuning, condition: { CopySourceIfMatch?: string }): Promise<CopyResult> {
  const created = await req.run((c) =>
    c.send(
      new CreateMultipartUploadCommand({
        Bucket: dest.bucket,
        Key: dest.key,
        Metadata: dest.metadata,
        ...(src.contentType ? { ContentType: src.contentType } : {}),
      }),
    ),
  );
  const uploadId = created.UploadId;
  if (!uploadId) throw toConnectorError(new Error('CreateMultipartUpload answered without an UploadId'), { op: 'CreateMultipartUpload', bucket: dest.bucket, key: dest.key });
  try {
    const partSize = Math.max(tuning.partSize, Math.ceil(src.size / MAX_PARTS));
    const count = Math.ceil(src.size / partSize);
    const parts: CompletedPart[] = new Array(count);
    let next = 0;
    let failed = false;
    const worker = async () => {
      for (let i = next++; i < count && !failed; i = next++) {
        const start = i * partSize;
        const end = Math.min(src.size, start + partSize) - 1;
        const out = await req.run((c) =>
          c.send(
            new UploadPartCopyCommand({
              Bucket: dest.bucket,
              Key: dest.key,
              UploadId: uploadId,
              PartNumber: i + 1,
              CopySource: copySourceOf(src),
              CopySourceRange: `bytes=${start}-${end}`,
              ...condition,
            }),
          ),
        );
        parts[i] = { PartNumber: i + 1, ETag: out.CopyPartResult?.ETag };
      }
    };
    // Every worker settles before an abort, so no part copy is still running when the upload goes.
    const settled = await Promise.allSettled(
      Array.from({ length: Math.min(PART_CONCURRENCY, count) }, () => worker().catch((err: unknown) => ((failed = true), Promise.reject(err)))),
    );
    const failure = settled.find((r) => r.status === 'rejected');
    if (failure) throw failure.reason;
    const done = await withIfNoneMatch((ifNoneMatch) =>
      req.run((c) =>
        c.send(new CompleteMultipartUploadCommand({ Bucket: dest.bucket, Key: dest.key, UploadId: uploadId, MultipartUpload: { Parts: parts }, ...ifNoneMatch })),
      ),
    );
    return { etag: unquoteEtag(done.ETag), multipart: true };
  } catch (err) {
    // Best effort: a failed abort leaves an incomplete upload that a lifecycle rule
    // (AbortIncompleteMultipartUpload) removes; the copy itself never became an object.
    await req.run((c) => c.send(new AbortMultipartUploadCommand({ Bucket: dest.bucket, Key: dest.key, UploadId: uploadId }))).catch(() => {});
    throw err;
  }
}
