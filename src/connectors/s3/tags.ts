/**
 * Verdict tags merged into an object's own tag set: GetObjectTagging, merge (ours win on our keys,
 * every other tag kept), PutObjectTagging, each of the given version when known. S3 has no
 * conditional PutObjectTagging, so with only an ETag the object is checked by HEAD first and a changed
 * object is `skipped`: a `clean` verdict must never land on a newer, unscanned upload (a new upload
 * starts with no tags, which a bucket policy denying untagged reads relies on).
 */
import { GetObjectTaggingCommand, PutObjectTaggingCommand, type Tag } from '@aws-sdk/client-s3';
import { ConnectorError, type ActionResult, type ObjectVersion } from '../types.ts';
import { changedDetail } from './delete.ts';
import { isNotImplemented, toConnectorError } from './errors.ts';
import { headObject, sameEtag } from './reads.ts';
import type { S3Requests } from './requests.ts';

/** S3's most tags per object. */
export const MAX_TAGS = 10;
/** S3's longest tag key and value (characters). */
const MAX_TAG_KEY = 128;
const MAX_TAG_VALUE = 256;
/** Characters S3 accepts in tag keys and values (letters, digits, spaces and `+ - = . _ : / @`). */
const TAG_TEXT = /^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$/u;

const notSupported = (why: string): ActionResult => ({ status: 'not_supported', detail: why });

/** Checks our tags against S3's rules; throws ConnectorError('invalid') naming the offending tag. */
function checkTags(tags: Record<string, string>): void {
  for (const [k, v] of Object.entries(tags)) {
    if (k === '' || k.length > MAX_TAG_KEY || !TAG_TEXT.test(k)) {
      throw new ConnectorError('invalid', `tag key ${JSON.stringify(k.slice(0, 140))} is not a valid S3 tag key (1-128 letters, digits, spaces and + - = . _ : / @)`);
    }
    if (v.length > MAX_TAG_VALUE || !TAG_TEXT.test(v)) {
      throw new ConnectorError('invalid', `value of tag ${k} is not a valid S3 tag value (up to 256 letters, digits, spaces and + - = . _ : / @)`);
    }
  }
}

/** Merges `tags` into the object's tags (see the module comment). */
export async function tagObject(req: S3Requests, bucket: string, key: string, tags: Record<string, string>, version: ObjectVersion = {}): Promise<ActionResult> {
  checkTags(tags);
  const versionId = version.versionId ?? undefined;
  const v = versionId ? { VersionId: versionId } : {};
  if (!versionId && version.etag) {
    const head = await headObject(req, bucket, key);
    if (head === null) throw new ConnectorError('not_found', `s3://${bucket}/${key} does not exist: nothing to tag`);
    if (!sameEtag(head.etag, version.etag)) return { status: 'skipped', detail: changedDetail(version.etag, head.etag) };
  }
  let current: Tag[];
  try {
    current = (await req.run((c) => c.send(new GetObjectTaggingCommand({ Bucket: bucket, Key: key, ...v })))).TagSet ?? [];
  } catch (err) {
    if (isNotImplemented(err)) return notSupported('the store does not implement object tagging (GetObjectTagging answered 501)');
    throw toConnectorError(err, { op: 'GetObjectTagging', bucket, key, action: versionId ? 's3:GetObjectVersionTagging' : 's3:GetObjectTagging' });
  }
  const merged = new Map<string, string>();
  for (const t of current) if (t.Key !== undefined) merged.set(t.Key, t.Value ?? '');
  const before = new Map(merged);
  for (const [k, val] of Object.entries(tags)) merged.set(k, val);
  if (merged.size === before.size && [...merged].every(([k, val]) => before.get(k) === val)) {
    return { status: 'already_done', detail: 'the object already carries these tags' };
  }
  if (merged.size > MAX_TAGS) {
    const own = [...before.keys()].filter((k) => !(k in tags));
    throw new ConnectorError(
      'invalid',
      `s3://${bucket}/${key} has ${own.length} tags of its own (${own.join(', ')}) and S3 allows at most ${MAX_TAGS} per object: adding ${Object.keys(tags).length} verdict tags would exceed it; free some, or set tag_mode none`,
    );
  }
  try {
    await req.run((c) =>
      c.send(new PutObjectTaggingCommand({ Bucket: bucket, Key: key, ...v, Tagging: { TagSet: [...merged].map(([Key, Value]) => ({ Key, Value })) } })),
    );
  } catch (err) {
    if (isNotImplemented(err)) return notSupported('the store does not implement object tagging (PutObjectTagging answered 501)');
    throw toConnectorError(err, { op: 'PutObjectTagging', bucket, key, action: versionId ? 's3:PutObjectVersionTagging' : 's3:PutObjectTagging' });
  }
  return { status: 'done', detail: `tagged ${Object.keys(tags).join(', ')}` };
}
