/**
 * `probe(scopeRoot)`: one result per capability the scopes need, changing no blob but the connector's
 * own probe blobs (written under the quarantine location and deleted at the end).
 *
 * - list: the first page of the scope.
 * - read: one byte of the first object of the scope (or of the probe blob when the scope is empty).
 * - quarantine: create the probe blob in the quarantine location (`If-None-Match: *`) and copy it there
 *   server-side, awaiting the copy, as quarantine does.
 * - tag: the tag mode's write on the probe blob (index tags or metadata).
 * - delete: the probe blobs, and a delete of a name that does not exist inside the scope: Azure
 *   authorizes before it looks the blob up, so a 404 there proves the permission without deleting anything.
 */
import { randomUUID } from 'node:crypto';
import type { BlobBeginCopyFromUrlPollState, BlobClient, ContainerClient } from '@azure/storage-blob';
import type { ProbeResult } from '../types.ts';
import type { AzureCalls } from './calls.ts';
import { errorCodeOf, firstLine, statusOf, toConnectorError } from './errors.ts';
import { listPage } from './listing.ts';
import { PROBE_NAME, type BlobNaming } from './naming.ts';
import type { AzureBlobSettings } from './settings.ts';

export interface ProbeContext {
  container: ContainerClient;
  quarantineContainer: ContainerClient;
  naming: BlobNaming;
  calls: AzureCalls;
  account: string;
  tagMode: AzureBlobSettings['tag_mode'];
}

const PROBE_BODY = 'dsx-connect probe: safe to delete\n';

function why(err: unknown, ctx: ProbeContext, what: string, need: string, container: string): string {
  return toConnectorError(err, { what, account: ctx.account, container, need }).message;
}

/** Runs the probe; never throws for a failed capability (its result says why). */
export async function probeIntegration(ctx: ProbeContext, scopeRoot: string): Promise<ProbeResult[]> {
  const results: ProbeResult[] = [];
  const q = ctx.naming.quarantine;
  const qWhere = `${q.container}/${q.prefix}`;
  const probe = ctx.quarantineContainer.getBlockBlobClient(ctx.naming.probeName());
  const copy = ctx.quarantineContainer.getBlobClient(`${probe.name}-copy`);
  let probeWritten = false;
  let firstIdentity: string | null = null;
  let listed = false;

  try {
    const page = await listPage(ctx, scopeRoot, null, 1);
    firstIdentity = page.objects[0]?.identity ?? null;
    listed = true;
    results.push({ capability: 'list', ok: true, detail: firstIdentity === null ? 'listed the scope: it is empty' : 'listed the scope' });
  } catch (err) {
    results.push({ capability: 'list', ok: false, detail: firstLine(err) });
  }

  try {
    await ctx.calls.run('writing the probe blob', (abortSignal) =>
      probe.upload(PROBE_BODY, Buffer.byteLength(PROBE_BODY), { abortSignal, conditions: { ifNoneMatch: '*' } }),
    );
    probeWritten = true;
    const poller = await ctx.calls.run('copying the probe blob', (abortSignal) => copy.beginCopyFromURL(probe.url, { abortSignal, conditions: { ifNoneMatch: '*' } }));
    const state = poller.getOperationState() as BlobBeginCopyFromUrlPollState;
    let status = state.isCompleted ? state.result?.copyStatus : 'pending';
    for (let i = 0; status === 'pending' && i < 20; i++) {
      await new Promise((r) => setTimeout(r, 250));
      status = (await ctx.calls.run('waiting for the probe copy', (abortSignal) => copy.getProperties({ abortSignal }))).copyStatus;
    }
    results.push(
      status === 'success'
        ? { capability: 'quarantine', ok: true, detail: `created and copied a probe blob in ${qWhere}` }
        : { capability: 'quarantine', ok: false, detail: `the probe copy in ${qWhere} ended ${status ?? 'without a status'}` },
    );
  } catch (err) {
    results.push({ capability: 'quarantine', ok: false, detail: why(err, ctx, `writing a probe blob in ${qWhere}`, 'create/write', q.container) });
  }

  results.push(await probeRead(ctx, firstIdentity, listed, probeWritten ? probe : null));
  results.push(await probeTag(ctx, probeWritten ? probe : null));
  results.push(await probeDelete(ctx, scopeRoot, probeWritten ? [copy, probe] : []));
  return ORDER.map((cap) => results.find((r) => r.capability === cap)!);
}

/** The order results are reported in. */
const ORDER: ProbeResult['capability'][] = ['list', 'read', 'tag', 'quarantine', 'delete'];

async function probeRead(ctx: ProbeContext, identity: string | null, listed: boolean, probe: BlobClient | null): Promise<ProbeResult> {
  const blob = identity !== null ? ctx.container.getBlobClient(ctx.naming.blobOf(identity)) : probe;
  const reason = listed ? 'the scope is empty' : 'the scope could not be listed';
  if (blob === null) return { capability: 'read', ok: false, detail: `${reason} and no probe blob could be written: nothing to read` };
  const where = identity !== null ? `the first object of the scope (${JSON.stringify(identity)})` : `the probe blob (${reason})`;
  try {
    // One byte: enough to prove read access. A zero-length blob answers the range with 416, which also proves it.
    await ctx.calls.run('reading one byte', async (abortSignal) => {
      try {
        const res = await blob.download(0, 1, { abortSignal, maxRetryRequests: 0 });
        res.readableStreamBody?.resume();
      } catch (err) {
        if (statusOf(err) !== 416) throw err;
      }
    });
    return { capability: 'read', ok: true, detail: `read ${where}` };
  } catch (err) {
    return { capability: 'read', ok: false, detail: why(err, ctx, `reading ${where}`, 'read', blob.containerName) };
  }
}

async function probeTag(ctx: ProbeContext, probe: BlobClient | null): Promise<ProbeResult> {
  if (ctx.tagMode === 'none') return { capability: 'tag', ok: false, detail: 'tag_mode is none: this integration writes no tags' };
  if (probe === null) return { capability: 'tag', ok: false, detail: 'no probe blob could be written to tag' };
  try {
    if (ctx.tagMode === 'index_tags') {
      await ctx.calls.run('tagging the probe blob', (abortSignal) => probe.setTags({ 'dsx-probe': 'ok' }, { abortSignal }));
      const tags = (await ctx.calls.run('reading the probe blob tags', (abortSignal) => probe.getTags({ abortSignal }))).tags;
      if (tags['dsx-probe'] !== 'ok') return { capability: 'tag', ok: false, detail: 'index tags were accepted but not read back' };
      return { capability: 'tag', ok: true, detail: 'set and read back an index tag on the probe blob' };
    }
    await ctx.calls.run('writing probe metadata', (abortSignal) => probe.setMetadata({ dsx_probe: 'ok' }, { abortSignal }));
    return { capability: 'tag', ok: true, detail: 'wrote metadata on the probe blob' };
  } catch (err) {
    return { capability: 'tag', ok: false, detail: why(err, ctx, `tagging the probe blob (tag_mode ${ctx.tagMode})`, 'tag', probe.containerName) };
  }
}

async function probeDelete(ctx: ProbeContext, scopeRoot: string, probes: BlobClient[]): Promise<ProbeResult> {
  const problems: string[] = [];
  for (const blob of probes) {
    try {
      await ctx.calls.run('deleting a probe blob', (abortSignal) => blob.delete({ abortSignal }));
    } catch (err) {
      if (statusOf(err) !== 404) problems.push(why(err, ctx, `deleting probe blob ${blob.containerName}/${blob.name} (delete it by hand)`, 'delete', blob.containerName));
    }
  }
  const absent = ctx.container.getBlobClient(`${ctx.naming.scopePrefix(scopeRoot)}${PROBE_NAME}absent-${randomUUID()}`);
  try {
    await ctx.calls.run('deleting an absent blob in the scope', (abortSignal) => absent.delete({ abortSignal }));
    problems.push('deleting a blob that should not exist in the scope succeeded');
  } catch (err) {
    if (errorCodeOf(err) !== 'BlobNotFound') problems.push(why(err, ctx, 'deleting in the scope', 'delete', ctx.naming.container));
  }
  if (problems.length) return { capability: 'delete', ok: false, detail: problems.join('; ') };
  return { capability: 'delete', ok: true, detail: `deleted the probe blobs${probes.length ? '' : ' (none written)'}; delete is authorized in the scope` };
}
