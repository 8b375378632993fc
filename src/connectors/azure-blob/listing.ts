/**
 * Enumeration: `listBlobsFlat({ prefix }).byPage({ continuationToken, maxPageSize })`, in the service's
 * order (blob names, lexicographic), with the service's continuation token as the durable cursor.
 *
 * A page of the connector may take several service pages: the service returns at most 5,000 items per
 * request, and folder markers and internal blobs take room in a service page without becoming objects.
 * Each request asks for exactly the room left in the page, so a page never holds more than `pageSize`
 * objects and the cursor is always the service's own token (a restarted scan resumes exactly there).
 */
import type { ContainerClient } from '@azure/storage-blob';
import { ConnectorError, type ObjectInfo, type Page, type SkippedEntry } from '../types.ts';
import type { AzureCalls } from './calls.ts';
import { toConnectorError } from './errors.ts';
import { quoteEtag, type BlobNaming } from './naming.ts';

/** Most items the service returns per List Blobs request. */
export const SERVICE_PAGE_MAX = 5000;

/**
 * Most service requests per connector page beyond those the page size needs: a scope crowded with
 * internal blobs returns a short page (with a cursor) instead of holding the job for the whole run.
 */
const EXTRA_REQUESTS = 8;

interface Cursor {
  /** The listing prefix the token belongs to (a cursor of another scope is refused). */
  prefix: string;
  token: string;
}

function encodeCursor(c: Cursor): string {
  return JSON.stringify({ prefix: c.prefix, token: c.token });
}

function decodeCursor(cursor: string, prefix: string): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(cursor);
  } catch {
    parsed = null;
  }
  const p = parsed as Partial<Cursor> | null;
  if (!p || typeof p.token !== 'string' || p.token === '' || typeof p.prefix !== 'string') {
    throw new ConnectorError('invalid', 'not an Azure Blob listing cursor (expected {"prefix", "token"}): restart the enumeration');
  }
  if (p.prefix !== prefix) {
    throw new ConnectorError('invalid', `cursor belongs to listing prefix ${JSON.stringify(p.prefix)}, not ${JSON.stringify(prefix)}: restart the enumeration`);
  }
  return p.token;
}

export interface ListContext {
  container: ContainerClient;
  naming: BlobNaming;
  calls: AzureCalls;
  account: string;
}

/** One page of objects under `scopeRoot` after `cursor` (see the module comment). */
export async function listPage(ctx: ListContext, scopeRoot: string, cursor: string | null, pageSize: number): Promise<Page> {
  if (!Number.isInteger(pageSize) || pageSize < 1) throw new ConnectorError('invalid', `page size must be a positive integer, got ${pageSize}`);
  const prefix = ctx.naming.scopePrefix(scopeRoot);
  let token: string | undefined = cursor === null ? undefined : decodeCursor(cursor, prefix);
  const objects: ObjectInfo[] = [];
  const skipped: SkippedEntry[] = [];
  const maxRequests = Math.ceil(pageSize / SERVICE_PAGE_MAX) + EXTRA_REQUESTS;
  const what = `listing ${JSON.stringify(prefix)} in container "${ctx.naming.container}"`;

  for (let requests = 0; requests < maxRequests; requests++) {
    const room = Math.min(pageSize - objects.length, SERVICE_PAGE_MAX);
    let page;
    try {
      page = await ctx.calls.run(what, async (abortSignal) => {
        const it = ctx.container.listBlobsFlat({ prefix, abortSignal }).byPage({ continuationToken: token, maxPageSize: room });
        return (await it.next()).value;
      });
    } catch (err) {
      throw toConnectorError(err, { what, account: ctx.account, container: ctx.naming.container, need: 'list' });
    }
    for (const item of page?.segment.blobItems ?? []) {
      const c = ctx.naming.classify(item.name);
      const size = item.properties.contentLength ?? null;
      if (c.kind === 'outside') continue; // cannot happen under our prefix; never returned
      if (c.kind === 'internal') {
        skipped.push({ identity: c.identity, reason: 'internal', detail: 'quarantine or probe blob of this integration' });
      } else if (c.kind === 'dot_segments') {
        skipped.push({ identity: c.identity, reason: 'special_file', detail: 'name with "." or ".." segments: the SDK cannot address it by name' });
      } else if (c.identity.endsWith('/') && (size === 0 || size === null)) {
        skipped.push({ identity: c.identity, reason: 'directory_marker' });
      } else {
        objects.push({
          identity: c.identity,
          size,
          etag: item.properties.etag ? quoteEtag(item.properties.etag) : null,
          mtime: item.properties.lastModified ? item.properties.lastModified.toISOString() : null,
          versionId: item.versionId ?? null,
        });
      }
    }
    token = page?.continuationToken || undefined;
    if (token === undefined || objects.length >= pageSize) break;
  }
  return { objects, nextCursor: token === undefined ? null : encodeCursor({ prefix, token }), skipped };
}
