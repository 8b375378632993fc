/**
 * Remediation: delete and quarantine, each acting on the scanned version only.
 *
 * Delete is conditioned on the scanned ETag (`If-Match`), or addresses the scanned version by id where
 * the account keeps versions, so a newer upload is never deleted: a 412 is `skipped` with why.
 *
 * Quarantine copies the blob to the quarantine location and waits for the copy to complete, verifies
 * it (copy status, length, Content-MD5 where the service keeps one, the source ETag recorded on the
 * copy), and only then deletes the source, conditioned on the scanned ETag. Never overwrites: the copy
 * is created with `If-None-Match: *`, and a name taken by other evidence gets a suffix derived from the
 * decision's key. The key is stored in the copy's metadata, so a retry after a crash finds its own
 * copy (and finishes the move) instead of making a second one.
 *
 * How the copy source is authorized (Copy Blob, asynchronous, same account): with Shared Key (account
 * key or a key connection string) the signed destination request authorizes reading the source; with
 * a SAS the source URL carries the SAS too (`BlobClient.url` of a SAS client includes it), so the SAS
 * needs read on the source and create/write on the destination; with Microsoft Entra ID the identity
 * needs read on the source. Azurite does not check the source's authorization at all (a bare source
 * URL copies under any credential); Azure does.
 */
import { createHash } from 'node:crypto';
import type { BlobBeginCopyFromUrlPollState, BlobClient, BlobGetPropertiesResponse, ContainerClient } from '@azure/storage-blob';
import { ConnectorError, type ActionResult, type ObjectVersion, type QuarantineOptions } from '../types.ts';
import type { AzureCalls } from './calls.ts';
import { errorCodeOf, statusOf, toConnectorError, type ErrorContext } from './errors.ts';
import { quoteEtag, sameEtag, type BlobNaming } from './naming.ts';
import { blobClientOf } from './reads.ts';

/** Metadata keys written on a quarantine copy (C# identifiers, as Azure metadata keys must be). */
export const QUARANTINE_META = {
  key: 'dsx_quarantine_key',
  source: 'dsx_source',
  sourceEtag: 'dsx_source_etag',
  at: 'dsx_quarantined_at',
} as const;

/** Names tried for a quarantine copy: the plain name, then this many suffixed ones. */
const SUFFIXED_NAMES = 4;

export interface RemediationContext {
  container: ContainerClient;
  quarantineContainer: ContainerClient;
  naming: BlobNaming;
  calls: AzureCalls;
  account: string;
  /** How long to wait for a pending copy before giving up for now (default 10 min). */
  copyTimeoutMs?: number;
  sleep?(ms: number, signal: AbortSignal): Promise<void>;
}

function errCtx(ctx: RemediationContext, what: string, need: string, container = ctx.naming.container): ErrorContext {
  return { what, account: ctx.account, container, need };
}

async function propertiesOrNull(ctx: RemediationContext, blob: BlobClient, what: string, container: string): Promise<BlobGetPropertiesResponse | null> {
  try {
    return await ctx.calls.run(what, (abortSignal) => blob.getProperties({ abortSignal }));
  } catch (err) {
    const mapped = toConnectorError(err, errCtx(ctx, what, 'read', container));
    if (mapped.kind === 'not_found') return null;
    throw mapped;
  }
}

type DeleteOutcome = 'deleted' | 'gone' | 'changed';

/**
 * Deletes the scanned version of a blob: by version id where given (the current version through the
 * base blob, conditioned on its ETag; an older one by id), else the base blob conditioned on `etag`.
 * Snapshots go with the base blob (a blob with snapshots cannot be deleted alone).
 */
async function deleteScanned(ctx: RemediationContext, identity: string, version: ObjectVersion, what: string): Promise<DeleteOutcome> {
  const base = blobClientOf(ctx, identity);
  let target = base;
  let ifMatch = version.etag ? quoteEtag(version.etag) : undefined;
  if (version.versionId) {
    const current = await propertiesOrNull(ctx, base, what, ctx.naming.container);
    if (current?.versionId !== version.versionId) {
      target = base.withVersion(version.versionId);
      ifMatch = undefined; // a version never changes: its id is the condition
    } else if (!ifMatch && current.etag) {
      ifMatch = current.etag;
    }
  }
  try {
    await ctx.calls.run(what, (abortSignal) =>
      target.delete({ abortSignal, conditions: ifMatch ? { ifMatch } : undefined, deleteSnapshots: target === base ? 'include' : undefined }),
    );
    return 'deleted';
  } catch (err) {
    const s = statusOf(err);
    // A conditional delete of a blob that no longer exists is a 412 too (azurite; HTTP's rule).
    if (s === 412) return (await propertiesOrNull(ctx, target, what, ctx.naming.container)) === null ? 'gone' : 'changed';
    if (s === 404 && errorCodeOf(err) !== 'ContainerNotFound') return 'gone';
    throw toConnectorError(err, errCtx(ctx, what, 'delete'));
  }
}

/** Deletes the scanned version of the object (see `deleteScanned`); `already_done` when it is gone. */
export async function removeBlob(ctx: RemediationContext, identity: string, version: ObjectVersion = {}): Promise<ActionResult> {
  const what = `deleting ${JSON.stringify(identity)}`;
  const outcome = await deleteScanned(ctx, identity, version, what);
  if (outcome === 'gone') return { status: 'already_done', detail: 'blob does not exist' };
  if (outcome === 'changed') {
    return { status: 'skipped', detail: `the blob changed since it was scanned (ETag ${version.etag} no longer matches): the newer upload was kept` };
  }
  return { status: 'done', detail: version.versionId ? `deleted version ${version.versionId}` : 'deleted' };
}

/** The suffix of the n-th alternative quarantine name: from the decision key where there is one. */
function suffixOf(n: number, key: string | undefined, etag: string): string {
  const seed = key ?? `${etag}:${Date.now()}:${Math.random()}`;
  return createHash('sha256').update(`${seed}#${n}`).digest('hex').slice(0, 8);
}

/** `container/name` of a quarantine copy, for details. */
function shown(ctx: RemediationContext, name: string): string {
  return `${ctx.naming.quarantine.container}/${name}`;
}

/** Metadata values must be ASCII: names are stored percent-encoded. */
function metaValue(s: string): string {
  return encodeURIComponent(s);
}

/** True when `props` are the metadata of this decision's own copy of this source version. */
function isOwnCopy(props: BlobGetPropertiesResponse, key: string | undefined, sourceEtag: string): boolean {
  const m = props.metadata ?? {};
  return key !== undefined && m[QUARANTINE_META.key] === metaValue(key) && sameEtag(m[QUARANTINE_META.sourceEtag], sourceEtag);
}

const defaultSleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      reject(signal.reason);
    }, { once: true });
  });

/** Polls the destination until its copy `copyId` (or any, when null) is no longer pending; returns its properties. */
async function awaitCopy(ctx: RemediationContext, dest: BlobClient, destName: string, copyId: string | null): Promise<BlobGetPropertiesResponse> {
  const what = `waiting for the quarantine copy ${shown(ctx, destName)}`;
  const deadline = Date.now() + (ctx.copyTimeoutMs ?? 600_000);
  const sleep = ctx.sleep ?? defaultSleep;
  // Same-account copies of block blobs usually complete at once; larger or cross-account ones take
  // seconds to minutes: poll from 200 ms, doubling to 5 s.
  for (let pause = 200; ; pause = Math.min(pause * 2, 5000)) {
    const p = await propertiesOrNull(ctx, dest, what, ctx.naming.quarantine.container);
    if (p === null) throw new ConnectorError('transient', `${what}: the copy vanished while pending; the source was kept`);
    if (copyId !== null && p.copyId !== undefined && p.copyId !== copyId) {
      throw new ConnectorError('transient', `${what}: another copy (${p.copyId}) replaced ours; the source was kept`);
    }
    if (p.copyStatus !== 'pending') return p;
    if (Date.now() + pause > deadline) {
      throw new ConnectorError('transient', `${what}: still pending after ${Math.round((ctx.copyTimeoutMs ?? 600_000) / 1000)} s (${p.copyProgress ?? '?'} bytes); the source was kept and a retry resumes the wait`);
    }
    await sleep(pause, ctx.calls.closedSignal);
  }
}

/**
 * Moves the object to the quarantine location (see the module comment). Returns `done` with the
 * destination, `already_done` when this decision's copy exists and the source is gone, or `skipped`
 * when the blob changed since it was scanned. Throws when a step fails; the source is then kept.
 */
export async function quarantineBlob(ctx: RemediationContext, identity: string, opts: QuarantineOptions = {}): Promise<ActionResult> {
  const what = `quarantining ${JSON.stringify(identity)}`;
  if (ctx.naming.isInternal(identity)) return { status: 'already_done', detail: 'the blob is inside the quarantine location' };
  const source = blobClientOf(ctx, identity, opts);
  const sourceName = ctx.naming.blobOf(identity);
  const props = await propertiesOrNull(ctx, source, what, ctx.naming.container);

  if (props === null) {
    // The source is gone: done by an earlier attempt if this decision's copy is there.
    const own = await findOwnCopy(ctx, identity, opts.key, opts.etag ?? null);
    if (own) return { status: 'already_done', detail: `already in quarantine at ${shown(ctx, own)}` };
    throw new ConnectorError('not_found', `${what}: the blob does not exist, and no quarantined copy of it was found`);
  }
  const etag = props.etag ? quoteEtag(props.etag) : null;
  if (!etag) throw new ConnectorError('transient', `${what}: the service returned no ETag for the source`);
  if (opts.etag && !sameEtag(opts.etag, etag)) {
    return { status: 'skipped', detail: `the blob changed since it was scanned (ETag ${quoteEtag(opts.etag)}, now ${etag}): the newer upload was not quarantined` };
  }

  let destName: string | null = null;
  let final: BlobGetPropertiesResponse | null = null;
  for (let n = 0; n <= SUFFIXED_NAMES && final === null; n++) {
    const name = ctx.naming.quarantineName(identity, n === 0 ? undefined : suffixOf(n, opts.key, etag));
    const dest = ctx.quarantineContainer.getBlobClient(name);
    const started = await startCopy(ctx, source, dest, name, props, etag, opts.key, sourceName);
    if (started.kind === 'taken') continue;
    if (started.kind === 'source_changed') {
      return { status: 'skipped', detail: `the blob changed while it was being quarantined (ETag ${etag} is gone): the newer upload was not quarantined` };
    }
    let p = await awaitCopy(ctx, dest, name, started.copyId);
    if (p.copyStatus !== 'success' && started.kind === 'own') {
      // Our own copy from an earlier attempt failed or was aborted: replace it once.
      await deleteFailedCopy(ctx, dest, name, p);
      const again = await startCopy(ctx, source, dest, name, props, etag, opts.key, sourceName);
      if (again.kind !== 'started') throw new ConnectorError('transient', `${what}: could not restart the failed copy at ${shown(ctx, name)}; the source was kept`);
      p = await awaitCopy(ctx, dest, name, again.copyId);
    }
    verifyCopy(what, p, props, etag, shown(ctx, name));
    destName = name;
    final = p;
  }
  if (destName === null) {
    throw new ConnectorError('invalid', `${what}: ${SUFFIXED_NAMES + 1} quarantine names for it are all taken by other evidence; clean up ${ctx.naming.quarantine.container}`);
  }

  const outcome = await deleteScanned(ctx, identity, { etag, versionId: opts.versionId ?? null }, `${what}: deleting the source after the verified copy`);
  if (outcome === 'changed') {
    return { status: 'skipped', detail: `copied to ${shown(ctx, destName)} (kept as evidence), but the blob changed after the copy: the newer upload was kept` };
  }
  return { status: 'done', detail: `moved to ${shown(ctx, destName)}` };
}

type StartResult = { kind: 'started'; copyId: string | null } | { kind: 'own'; copyId: string | null } | { kind: 'taken' } | { kind: 'source_changed' };

/**
 * Starts the copy to `dest` unless the name is taken: `own` when the name holds this decision's copy
 * of this version (an earlier attempt), `taken` when it holds other evidence.
 */
async function startCopy(
  ctx: RemediationContext,
  source: BlobClient,
  dest: BlobClient,
  destName: string,
  props: BlobGetPropertiesResponse,
  etag: string,
  key: string | undefined,
  sourceName: string,
): Promise<StartResult> {
  const what = `copying ${JSON.stringify(sourceName)} to quarantine ${shown(ctx, destName)}`;
  const metadata: Record<string, string> = {
    ...(props.metadata ?? {}),
    [QUARANTINE_META.source]: metaValue(`${ctx.naming.container}/${sourceName}`),
    [QUARANTINE_META.sourceEtag]: etag,
    [QUARANTINE_META.at]: new Date().toISOString(),
    ...(key !== undefined ? { [QUARANTINE_META.key]: metaValue(key) } : {}),
  };
  try {
    const poller = await ctx.calls.run(what, (abortSignal) =>
      dest.beginCopyFromURL(source.url, {
        abortSignal,
        metadata,
        conditions: { ifNoneMatch: '*' },
        sourceConditions: { ifMatch: etag },
      }),
    );
    return { kind: 'started', copyId: (poller.getOperationState() as BlobBeginCopyFromUrlPollState).copyId ?? null };
  } catch (err) {
    const s = statusOf(err);
    if (s !== 409 && s !== 412) throw toConnectorError(err, errCtx(ctx, what, 'write (create) on the quarantine location and read on the source', ctx.naming.quarantine.container));
    // 409 BlobAlreadyExists or 412: the destination is taken, or the source's ETag no longer matches.
    const existing = await propertiesOrNull(ctx, dest, what, ctx.naming.quarantine.container);
    if (existing === null) return { kind: 'source_changed' };
    if (isOwnCopy(existing, key, etag)) return { kind: 'own', copyId: existing.copyId ?? null };
    return { kind: 'taken' };
  }
}

/**
 * Looks for the copy an earlier attempt made, under the names quarantine would have used: with a key,
 * this decision's copy; without one, only a copy of this blob (and of `etag`, when given) under the
 * plain name, the only name a keyless attempt can be found under again.
 */
async function findOwnCopy(ctx: RemediationContext, identity: string, key: string | undefined, etag: string | null): Promise<string | null> {
  const what = `looking for the quarantine copy of ${JSON.stringify(identity)}`;
  const source = metaValue(`${ctx.naming.container}/${ctx.naming.blobOf(identity)}`);
  const names = key === undefined ? 1 : SUFFIXED_NAMES + 1;
  for (let n = 0; n < names; n++) {
    // The suffix depends only on the key: the source ETag is unknown once the source is gone.
    const name = ctx.naming.quarantineName(identity, n === 0 ? undefined : suffixOf(n, key, ''));
    const p = await propertiesOrNull(ctx, ctx.quarantineContainer.getBlobClient(name), what, ctx.naming.quarantine.container);
    if (p === null) return null;
    const m = p.metadata ?? {};
    const mine = key === undefined ? m[QUARANTINE_META.source] === source : m[QUARANTINE_META.key] === metaValue(key);
    if (mine && (etag === null || sameEtag(m[QUARANTINE_META.sourceEtag], etag)) && p.copyStatus === 'success') return name;
  }
  return null;
}

async function deleteFailedCopy(ctx: RemediationContext, dest: BlobClient, name: string, p: BlobGetPropertiesResponse): Promise<void> {
  const what = `removing the failed quarantine copy ${shown(ctx, name)}`;
  try {
    await ctx.calls.run(what, (abortSignal) => dest.delete({ abortSignal, conditions: p.etag ? { ifMatch: p.etag } : undefined }));
  } catch (err) {
    if (statusOf(err) !== 404) throw toConnectorError(err, errCtx(ctx, what, 'delete', ctx.naming.quarantine.container));
  }
}

/** Throws unless the finished copy is complete and matches the source version. */
function verifyCopy(what: string, p: BlobGetPropertiesResponse, source: BlobGetPropertiesResponse, etag: string, where: string): void {
  if (p.copyStatus !== 'success') {
    throw new ConnectorError('transient', `${what}: the copy to ${where} ended ${p.copyStatus ?? 'without a status'} (${p.copyStatusDescription ?? 'no reason given'}); the source was kept`);
  }
  if (p.contentLength !== source.contentLength) {
    throw new ConnectorError('transient', `${what}: the copy at ${where} has ${p.contentLength} bytes, the source ${source.contentLength}; the source was kept`);
  }
  const a = p.contentMD5 ? Buffer.from(p.contentMD5).toString('base64') : null;
  const b = source.contentMD5 ? Buffer.from(source.contentMD5).toString('base64') : null;
  if (a && b && a !== b) throw new ConnectorError('transient', `${what}: the copy at ${where} has Content-MD5 ${a}, the source ${b}; the source was kept`);
  if (!sameEtag(p.metadata?.[QUARANTINE_META.sourceEtag], etag)) {
    throw new ConnectorError('transient', `${what}: the blob at ${where} is not a copy of ETag ${etag}; the source was kept`);
  }
}
