/**
 * `dsx-connect integration test` for S3: tries each capability a scope needs and says, per capability,
 * ok or why not. It changes no object but its own probe objects, written under the quarantine location
 * and deleted at the end (also when a step failed):
 *
 * - list: ListObjectsV2 (1 key) under the scope.
 * - read: the first byte of the first non-empty object listed (the probe object when there is none).
 * - quarantine: PutObject of a probe object in the quarantine location and a CopyObject of it there.
 * - tag: GetObjectTagging of the listed object, Put/GetObjectTagging of the probe (a scope object's
 *   tags are never changed by a probe, so permission to tag *them* is inferred from the probe's).
 * - delete: DeleteObject of the probe objects (the same permission on the quarantine location; scope
 *   objects are never deleted by a probe).
 */
import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  GetObjectTaggingCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  PutObjectTaggingCommand,
} from '@aws-sdk/client-s3';
import type { ProbeResult } from '../types.ts';
import { copySourceOf } from './copy.ts';
import { isNotImplemented, toConnectorError, type RequestTarget } from './errors.ts';
import type { S3KeyLayout } from './layout.ts';
import type { Request, S3Requests } from './requests.ts';

/** What a probe needs from its connector. */
export interface ProbeContext {
  req: S3Requests;
  layout: S3KeyLayout;
  tagMode: 'tags' | 'none';
}

const PROBE_BODY = 'dsx-connect probe object: safe to delete\n';

/** Runs each probe step; the result says ok or the mapped error's message. */
export async function probe(ctx: ProbeContext, scopeRoot: string): Promise<ProbeResult[]> {
  const { req, layout } = ctx;
  const results: ProbeResult[] = [];
  const step = async (capability: ProbeResult['capability'], fn: () => Promise<string>): Promise<boolean> => {
    try {
      results.push({ capability, ok: true, detail: await fn() });
      return true;
    } catch (err) {
      results.push({ capability, ok: false, detail: err instanceof Error ? err.message : String(err) });
      return false;
    }
  };
  const send = <O>(target: RequestTarget, request: Request<O>) => req.send(request, target);
  const qb = layout.quarantineBucket;
  const probeKey = layout.probeKey();
  const copyKey = `${probeKey}.copy`;
  const written: string[] = [];
  let sample: string | null = null;

  try {
    const prefix = layout.listPrefix(scopeRoot);
    await step('list', async () => {
      const out = await send({ op: 'ListObjectsV2', bucket: layout.bucket, key: prefix, action: 's3:ListBucket' }, (c) =>
        c.send(new ListObjectsV2Command({ Bucket: layout.bucket, Prefix: prefix, MaxKeys: 20 })),
      );
      // A byte range of an empty object is unsatisfiable (416): the sample has at least one byte.
      sample = (out.Contents ?? []).find((o) => (o.Size ?? 0) > 0 && !o.Key!.endsWith('/') && !layout.isInternalKey(o.Key!))?.Key ?? null;
      return `listed s3://${layout.bucket}/${prefix}${sample === null ? ' (no object in the scope yet)' : ''}`;
    });

    const quarantineOk = await step('quarantine', async () => {
      await send({ op: 'PutObject', bucket: qb, key: probeKey, action: 's3:PutObject' }, (c) =>
        c.send(new PutObjectCommand({ Bucket: qb, Key: probeKey, Body: PROBE_BODY, ContentType: 'text/plain' })),
      );
      written.push(probeKey);
      await send({ op: 'CopyObject', bucket: qb, key: copyKey, action: 's3:GetObject and s3:PutObject' }, (c) =>
        c.send(new CopyObjectCommand({ Bucket: qb, Key: copyKey, CopySource: copySourceOf({ bucket: qb, key: probeKey, versionId: null }) })),
      );
      written.push(copyKey);
      return `wrote and copied a probe object in s3://${qb}/${layout.quarantinePrefix}`;
    });

    await step('read', async () => {
      const [bucket, key] = sample !== null ? [layout.bucket, sample] : [qb, probeKey];
      if (sample === null && !quarantineOk) throw new Error('no object in the scope to read, and no probe object could be written');
      const out = await send({ op: 'GetObject', bucket, key, action: 's3:GetObject' }, (c) => c.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: 'bytes=0-0' })));
      await out.Body?.transformToByteArray();
      return sample !== null ? `read the first byte of s3://${bucket}/${key}` : `read the probe object (no object in the scope yet)`;
    });

    await step('tag', async () => {
      if (ctx.tagMode === 'none') throw new Error('tag_mode is none: tag actions are recorded as not_supported');
      if (!quarantineOk) throw new Error('no probe object could be written to tag');
      try {
        if (sample !== null) {
          const key = sample;
          await send({ op: 'GetObjectTagging', bucket: layout.bucket, key, action: 's3:GetObjectTagging' }, (c) =>
            c.send(new GetObjectTaggingCommand({ Bucket: layout.bucket, Key: key })),
          );
        }
        await req.run((c) => c.send(new PutObjectTaggingCommand({ Bucket: qb, Key: probeKey, Tagging: { TagSet: [{ Key: 'dsx-probe', Value: 'true' }] } })));
        const got = await req.run((c) => c.send(new GetObjectTaggingCommand({ Bucket: qb, Key: probeKey })));
        if (!(got.TagSet ?? []).some((t) => t.Key === 'dsx-probe' && t.Value === 'true')) throw new Error('the store accepted a tag but does not return it');
      } catch (err) {
        if (isNotImplemented(err)) throw new Error('the store does not implement object tagging: set tag_mode none');
        throw err instanceof Error && !('$metadata' in err) ? err : toConnectorError(err, { op: 'PutObjectTagging', bucket: qb, key: probeKey, action: 's3:GetObjectTagging and s3:PutObjectTagging' });
      }
      return 'read tags in the scope and wrote and read back a tag on the probe object';
    });

    await step('delete', async () => {
      if (written.length === 0) throw new Error('no probe object could be written to delete');
      for (const key of [...written].reverse()) {
        await send({ op: 'DeleteObject', bucket: qb, key, action: 's3:DeleteObject' }, (c) => c.send(new DeleteObjectCommand({ Bucket: qb, Key: key })));
        written.splice(written.indexOf(key), 1);
      }
      return 'deleted the probe objects';
    });
  } finally {
    for (const key of written) await req.run((c) => c.send(new DeleteObjectCommand({ Bucket: qb, Key: key }))).catch(() => {});
  }
  const order: ProbeResult['capability'][] = ['list', 'read', 'tag', 'quarantine', 'delete'];
  return results.sort((a, b) => order.indexOf(a.capability) - order.indexOf(b.capability));
}
