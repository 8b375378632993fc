/**
 * Reads: a streamed download (`download()`'s `readableStreamBody`) and blob properties.
 *
 * The SDK can resume a broken download stream by itself (range requests conditioned on the ETag), but
 * those requests would bypass the integration's limiter; `maxRetryRequests: 0` leaves the retry to
 * the scan job, which reopens the object (its in-process tries, then the queue's).
 */
import type { Readable } from 'node:stream';
import type { BlobClient, ContainerClient } from '@azure/storage-blob';
import { ConnectorError, type ObjectInfo, type ObjectVersion, type OpenedObject } from '../types.ts';
import type { AzureCalls } from './calls.ts';
import { statusOf, toConnectorError } from './errors.ts';
import { quoteEtag, type BlobNaming } from './naming.ts';

export interface ReadContext {
  container: ContainerClient;
  naming: BlobNaming;
  calls: AzureCalls;
  account: string;
}

/** The client of an identity, of the given version when there is one. */
export function blobClientOf(ctx: ReadContext, identity: string, version?: ObjectVersion): BlobClient {
  const blob = ctx.container.getBlobClient(ctx.naming.blobOf(identity));
  return version?.versionId ? blob.withVersion(version.versionId) : blob;
}

/**
 * Opens the blob for reading: the given version, or (with only an ETag) exactly that content, which
 * fails as `not_found` once the blob has changed. The stream must be consumed or destroyed: it holds
 * one of the integration's request slots until it closes.
 */
export async function openBlob(ctx: ReadContext, identity: string, version?: ObjectVersion): Promise<OpenedObject> {
  const blob = blobClientOf(ctx, identity, version);
  const ifMatch = !version?.versionId && version?.etag ? quoteEtag(version.etag) : undefined;
  const what = `reading ${JSON.stringify(identity)}`;
  try {
    return await ctx.calls.runStreaming(what, async (abortSignal) => {
      const res = await blob.download(0, undefined, { abortSignal, maxRetryRequests: 0, conditions: ifMatch ? { ifMatch } : undefined });
      const stream = res.readableStreamBody as Readable | undefined;
      if (!stream) throw new ConnectorError('transient', `${what}: the download has no body stream`);
      return {
        stream,
        size: res.contentLength ?? null,
        etag: res.etag ? quoteEtag(res.etag) : null,
        versionId: res.versionId ?? null,
        mtime: res.lastModified ? res.lastModified.toISOString() : null,
      };
    });
  } catch (err) {
    if (ifMatch && statusOf(err) === 412) {
      throw new ConnectorError('not_found', `${what}: the blob changed since it was listed (ETag ${ifMatch} is gone); its new content is another version`, { cause: err });
    }
    throw toConnectorError(err, { what, account: ctx.account, container: ctx.naming.container, need: 'read' });
  }
}

/** Current properties of the blob, or null when it does not exist. */
export async function statBlob(ctx: ReadContext, identity: string, version?: ObjectVersion): Promise<ObjectInfo | null> {
  const blob = blobClientOf(ctx, identity, version);
  const what = `reading the properties of ${JSON.stringify(identity)}`;
  try {
    const p = await ctx.calls.run(what, (abortSignal) => blob.getProperties({ abortSignal }));
    return {
      identity,
      size: p.contentLength ?? null,
      etag: p.etag ? quoteEtag(p.etag) : null,
      mtime: p.lastModified ? p.lastModified.toISOString() : null,
      versionId: p.versionId ?? null,
    };
  } catch (err) {
    const mapped = toConnectorError(err, { what, account: ctx.account, container: ctx.naming.container, need: 'read' });
    if (mapped.kind === 'not_found') return null;
    throw mapped;
  }
}
