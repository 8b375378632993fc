/**
 * Enumeration with ListObjectsV2, in S3's key order (UTF-8 binary), page by page.
 *
 * The cursor is S3's own `ContinuationToken`, wrapped with the listing prefix it belongs to: a
 * restarted scan passes the last recorded cursor and S3 resumes right after the last key of that page,
 * from any process or connector instance. S3 answers at most 1,000 keys per call, so a larger page is
 * several calls, each asking only for what the page still needs (`MaxKeys`), which keeps every page
 * boundary on a token S3 gave out. Folder markers (keys ending in `/`) and the connector's own keys
 * are reported in `Page.skipped`; the quarantine area inside the listed prefix is jumped over with
 * `StartAfter` (one skipped entry) instead of being walked key by key, so pages stay bounded however
 * much has been quarantined.
 */
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { ConnectorError, type ObjectInfo, type Page, type SkippedEntry } from '../types.ts';
import { keyAfterPrefix, type S3KeyLayout } from './layout.ts';
import { unquoteEtag } from './reads.ts';
import type { S3Requests } from './requests.ts';

/** S3's maximum keys per ListObjectsV2 call. */
export const MAX_KEYS_PER_CALL = 1000;

/** Where the next call starts: after a continuation token, or after a key (a jump). */
type Position = { token: string } | { after: string };

interface CursorShape {
  v: 1;
  /** Listing prefix the cursor belongs to. */
  p: string;
  t?: string;
  a?: string;
}

function encodeCursor(prefix: string, pos: Position): string {
  const c: CursorShape = 'token' in pos ? { v: 1, p: prefix, t: pos.token } : { v: 1, p: prefix, a: pos.after };
  return JSON.stringify(c);
}

function decodeCursor(cursor: string, prefix: string): Position {
  let c: unknown;
  try {
    c = JSON.parse(cursor);
  } catch {
    c = null;
  }
  const o = (typeof c === 'object' && c !== null ? c : {}) as Partial<CursorShape>;
  if (o.v !== 1 || typeof o.p !== 'string' || (typeof o.t !== 'string') === (typeof o.a !== 'string')) {
    throw new ConnectorError('invalid', `not an S3 listing cursor: ${JSON.stringify(cursor.slice(0, 120))} (start the scan again without a cursor)`);
  }
  if (o.p !== prefix) {
    throw new ConnectorError('invalid', `the cursor belongs to the listing of ${JSON.stringify(o.p)}, not of ${JSON.stringify(prefix)}`);
  }
  return typeof o.t === 'string' ? { token: o.t } : { after: o.a! };
}

/** One page of the scope's objects after `cursor`. */
export async function listPage(req: S3Requests, layout: S3KeyLayout, scopeRoot: string, cursor: string | null, pageSize: number): Promise<Page> {
  if (!Number.isInteger(pageSize) || pageSize < 1) {
    throw new ConnectorError('invalid', `page size must be a positive integer, got ${pageSize}`);
  }
  const prefix = layout.listPrefix(scopeRoot);
  if (layout.isInternalKey(prefix)) {
    return { objects: [], nextCursor: null, skipped: [{ identity: scopeRoot, reason: 'internal', detail: 'the scope lies inside the quarantine area' }] };
  }
  const area = layout.quarantineAreaUnder(prefix);
  const jumpKey = area === null ? null : keyAfterPrefix(layout.quarantinePrefix);

  let pos: Position | null = cursor === null ? null : decodeCursor(cursor, prefix);
  const objects: ObjectInfo[] = [];
  const skipped: SkippedEntry[] = [];
  // Pages of folder markers alone must end too: at most this many calls, then a short page and a cursor.
  const maxCalls = Math.ceil(pageSize / MAX_KEYS_PER_CALL) + 4;

  for (let calls = 0; calls < maxCalls && objects.length < pageSize; calls++) {
    const p: Position | null = pos;
    const out = await req.send(
      (c) =>
        c.send(
          new ListObjectsV2Command({
            Bucket: layout.bucket,
            Prefix: prefix,
            MaxKeys: Math.min(MAX_KEYS_PER_CALL, pageSize - objects.length),
            ...(p && 'token' in p ? { ContinuationToken: p.token } : {}),
            ...(p && 'after' in p ? { StartAfter: p.after } : {}),
          }),
        ),
      { op: 'ListObjectsV2', bucket: layout.bucket, key: prefix, action: 's3:ListBucket' },
    );
    let jumped = false;
    for (const entry of out.Contents ?? []) {
      const key = entry.Key ?? '';
      if (layout.isInternalKey(key)) {
        const alreadyJumped = p !== null && 'after' in p && p.after === jumpKey;
        if (jumpKey !== null && !alreadyJumped) {
          skipped.push({ identity: area!, reason: 'internal', detail: 'quarantine area of this integration (not listed)' });
          pos = { after: jumpKey };
          jumped = true;
          break;
        }
        skipped.push({ identity: key.slice(layout.prefix.length), reason: 'internal', detail: 'object of this integration\'s quarantine area' });
        continue;
      }
      const identity = key.slice(layout.prefix.length);
      if (key.endsWith('/')) {
        skipped.push({ identity, reason: 'directory_marker', detail: 'a key ending in "/" marks a folder' });
        continue;
      }
      objects.push({
        identity,
        size: entry.Size ?? null,
        etag: unquoteEtag(entry.ETag),
        mtime: entry.LastModified?.toISOString() ?? null,
        versionId: null,
      });
    }
    if (jumped) continue;
    pos = out.IsTruncated && out.NextContinuationToken ? { token: out.NextContinuationToken } : null;
    if (pos === null) break;
  }
  return { objects, nextCursor: pos === null ? null : encodeCursor(prefix, pos), skipped };
}
