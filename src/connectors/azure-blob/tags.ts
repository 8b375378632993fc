/**
 * Verdict tags, merged into the blob's own (never removing others), by `tag_mode`:
 * - `index_tags`: blob index tags (Get/Set Blob Tags). Queryable and usable in ABAC conditions (deny
 *   reads unless `dsx-verdict` is `clean`), but billed per tag per month: at scale the cheaper choice
 *   is `metadata`. Setting tags changes neither the content, the ETag nor Last-Modified.
 * - `metadata`: blob metadata (Set Blob Metadata). Keys must be C# identifiers, so `dsx-verdict` is
 *   stored as `dsx_verdict`. Azure gives the blob a new ETag and Last-Modified for it (the content and
 *   Content-MD5 stay, and no BlobCreated event is raised).
 * - `none`: `not_supported`.
 *
 * The verdict is about the scanned content: with an ETag given, a blob that changed since is `skipped`.
 */
import type { ContainerClient } from '@azure/storage-blob';
import { ConnectorError, type ActionResult, type ObjectVersion } from '../types.ts';
import type { AzureCalls } from './calls.ts';
import { statusOf, toConnectorError } from './errors.ts';
import { quoteEtag, sameEtag, type BlobNaming } from './naming.ts';
import { blobClientOf } from './reads.ts';
import type { AzureBlobSettings } from './settings.ts';

/** Azure's limit of blob index tags per blob. */
export const MAX_INDEX_TAGS = 10;

export interface TagContext {
  container: ContainerClient;
  naming: BlobNaming;
  calls: AzureCalls;
  account: string;
  tagMode: AzureBlobSettings['tag_mode'];
}

// Index tag keys (1-128) and values (0-256) allow letters, digits, space and + - . / : = _
const TAG_CHARS = /[^A-Za-z0-9 +\-./:=_]/g;

/** An index tag key or value as Azure accepts it; other characters become `_`. */
function indexTagText(s: string, max: number): string {
  return s.replace(TAG_CHARS, '_').slice(0, max);
}

/** A metadata key as Azure accepts it (a C# identifier): `dsx-verdict` -> `dsx_verdict`. */
export function metadataKeyOf(key: string): string {
  const k = key.replace(/[^A-Za-z0-9_]/g, '_');
  return /^[A-Za-z_]/.test(k) ? k : `_${k}`;
}

/** Merges `tags` into the blob's tags or metadata as `tag_mode` says (see the module comment). */
export async function tagBlob(ctx: TagContext, identity: string, tags: Record<string, string>, version: ObjectVersion = {}): Promise<ActionResult> {
  if (ctx.tagMode === 'none') return { status: 'not_supported', detail: 'tag_mode is none: this integration writes no tags' };
  if (ctx.tagMode === 'metadata') return tagMetadata(ctx, identity, tags, version);
  return tagIndex(ctx, identity, tags, version);
}

const changed = (scanned: string, now: string): ActionResult => ({
  status: 'skipped',
  detail: `the blob changed since it was scanned (ETag ${quoteEtag(scanned)}, now ${now}): the verdict was not applied to the newer upload`,
});

async function tagIndex(ctx: TagContext, identity: string, tags: Record<string, string>, version: ObjectVersion): Promise<ActionResult> {
  const blob = blobClientOf(ctx, identity, version);
  const what = `tagging ${JSON.stringify(identity)}`;
  const err = (e: unknown) => toConnectorError(e, { what, account: ctx.account, container: ctx.naming.container, need: 'tag (read and write blob tags)' });
  try {
    if (version.etag && !version.versionId) {
      // Set Blob Tags takes no If-Match: compare first (a version id, where kept, is exact instead).
      const p = await ctx.calls.run(what, (abortSignal) => blob.getProperties({ abortSignal }));
      if (p.etag && !sameEtag(p.etag, version.etag)) return changed(version.etag, p.etag);
    }
    const current = (await ctx.calls.run(what, (abortSignal) => blob.getTags({ abortSignal }))).tags;
    const wanted = Object.fromEntries(Object.entries(tags).map(([k, v]) => [indexTagText(k, 128), indexTagText(v, 256)]));
    const merged = { ...current, ...wanted };
    if (Object.entries(wanted).every(([k, v]) => current[k] === v)) {
      return { status: 'already_done', detail: 'the blob already carries these index tags' };
    }
    const count = Object.keys(merged).length;
    if (count > MAX_INDEX_TAGS) {
      throw new ConnectorError('invalid', `${what}: the blob would carry ${count} index tags; Azure allows ${MAX_INDEX_TAGS} per blob: remove some of its own tags, or set tag_mode to metadata`);
    }
    await ctx.calls.run(what, (abortSignal) => blob.setTags(merged, { abortSignal }));
    return { status: 'done', detail: `index tags ${Object.entries(wanted).map(([k, v]) => `${k}=${v}`).join(', ')}` };
  } catch (e) {
    throw err(e);
  }
}

async function tagMetadata(ctx: TagContext, identity: string, tags: Record<string, string>, version: ObjectVersion): Promise<ActionResult> {
  const name = ctx.naming.blobOf(identity);
  const blob = ctx.container.getBlobClient(name);
  const what = `writing verdict metadata on ${JSON.stringify(identity)}`;
  const err = (e: unknown) => toConnectorError(e, { what, account: ctx.account, container: ctx.naming.container, need: 'write' });
  if (version.versionId) {
    return { status: 'not_supported', detail: 'metadata of an older blob version cannot be changed (Set Blob Metadata has no version id); use tag_mode index_tags' };
  }
  // getProperties lowercases metadata keys; a listing keeps their case. The blob itself is the first
  // name under the prefix of its own name.
  let item;
  try {
    item = await ctx.calls.run(what, async (abortSignal) => {
      const page = (await ctx.container.listBlobsFlat({ prefix: name, includeMetadata: true, abortSignal }).byPage({ maxPageSize: 1 }).next()).value;
      return page?.segment.blobItems[0];
    });
  } catch (e) {
    throw err(e);
  }
  if (!item || item.name !== name) throw new ConnectorError('not_found', `${what}: the blob does not exist`);
  const etag = quoteEtag(item.properties.etag);
  if (version.etag && !sameEtag(etag, version.etag)) return changed(version.etag, etag);

  const current: Record<string, string> = item.metadata ?? {};
  const wanted: Record<string, string> = {};
  const renamed: string[] = [];
  for (const [k, v] of Object.entries(tags)) {
    const key = metadataKeyOf(k);
    if (key !== k) renamed.push(`${k} -> ${key}`);
    // Metadata travels in HTTP headers: values outside printable ASCII are stored percent-encoded.
    wanted[key] = /^[\x20-\x7e]*$/.test(v) ? v : encodeURIComponent(v);
  }
  // Keys are case-insensitive in Azure: drop the blob's own spelling of a key we set.
  const lower = new Set(Object.keys(wanted).map((k) => k.toLowerCase()));
  const kept: Record<string, string> = Object.fromEntries(Object.entries(current).filter(([k]) => !lower.has(k.toLowerCase())));
  const currentLower = Object.fromEntries(Object.entries(current).map(([k, v]) => [k.toLowerCase(), v]));
  if (Object.entries(wanted).every(([k, v]) => currentLower[k.toLowerCase()] === v)) {
    return { status: 'already_done', detail: 'the blob already carries this verdict metadata' };
  }
  try {
    await ctx.calls.run(what, (abortSignal) => blob.setMetadata({ ...kept, ...wanted }, { abortSignal, conditions: { ifMatch: etag } }));
  } catch (e) {
    if (statusOf(e) === 412) return changed(version.etag ?? etag, 'another ETag');
    throw err(e);
  }
  const note = renamed.length ? ` (metadata keys must be C# identifiers: ${renamed.join(', ')})` : '';
  return { status: 'done', detail: `metadata ${Object.entries(wanted).map(([k, v]) => `${k}=${v}`).join(', ')}${note}` };
}
