/**
 * ScanObjectJob: fetch the object as a stream, submit it to DSXA, and hand the verdict to finalization.
 * A retryable failure is thrown (graphile-worker retries with backoff) until the last attempt; then,
 * or at once for a final failure, the object is finalized with the failure as its outcome, so a scan
 * job never fails permanently and no full scan is stranded.
 */
import { ConnectorError } from '../connectors/types.ts';
import { DsxaError } from '../dsxa/client.ts';
import { scanJobDefer } from '../db/sql/scan-results.ts';
import { childEnvelope, FINALIZE_TASK_OF, TASKS, type Job, type ScanOutcome, type ScanTask } from '../jobs/envelope.ts';
import type { PipelineContext } from './context.ts';
import type { Attempt } from './full-scan.ts';

/** Tries of one scan inside one job attempt (pauses 100 ms, 400 ms) before the queue retries it. */
const IN_PROCESS_TRIES = 3;

/** How a scan job ended: queued a finalize job, skipped (the row was no longer pending), or deferred (the scanner is unavailable). */
export type ScanJobResult = { status: 'queued' | 'skipped' | 'deferred'; state?: string };

/** Points where tests hold or watch scan jobs (PipelineContext.hooks); none in production. */
export interface ScanHooks {
  /** Awaited as a scan job starts, before anything is read or recorded. */
  started?(job: Job<ScanTask>): Promise<void> | void;
}

/** Deferred jobs are spread over this long after the next probe, so they do not all arrive at once. */
const DEFER_SPREAD_MS = 5_000;

/**
 * Puts the job back in the queue for just after the scanner's next probe and completes it: an outage
 * never uses up the object's attempts and never becomes a verdict.
 */
async function defer(ctx: PipelineContext, job: Job<ScanTask>, attempt: Attempt): Promise<ScanJobResult> {
  const at = Math.max(ctx.scanner.nextProbeAt, Date.now()) + 250 + Math.random() * DEFER_SPREAD_MS;
  await scanJobDefer(ctx.pool, job, new Date(at), attempt.maxAttempts);
  return { status: 'deferred' };
}

/**
 * A store that still throttles after the connector's own backoff (~6 s of tries per request) is asking
 * for time, not failing the object: the job waits 2 s, 4 s, ... up to 2 min (with jitter) and tries
 * again, without using an attempt, this many times (about 25 minutes in all). Only then do the retries
 * count, and an object whose store never stops throttling ends fetch_failed / throttled_exhausted.
 */
export const THROTTLE_DEFERRALS = 16;

/** How long the n-th wait for a throttling store lasts (n from 0). */
export function throttleDelayMs(n: number): number {
  return Math.min(2_000 * 2 ** n, 120_000) * (0.75 + Math.random() * 0.5);
}

async function deferThrottled(ctx: PipelineContext, job: Job<ScanTask>, attempt: Attempt, n: number): Promise<ScanJobResult> {
  const payload = { ...job, body: { ...job.body, throttle_deferrals: n + 1 } };
  await scanJobDefer(ctx.pool, payload, new Date(Date.now() + throttleDelayMs(n)), attempt.maxAttempts);
  return { status: 'deferred' };
}

function failureOf(err: unknown): { outcome: ScanOutcome; retryable: boolean } {
  if (err instanceof ConnectorError) {
    return { outcome: { kind: 'failure', stage: 'fetch', failure: err.kind, message: err.message }, retryable: err.retryable };
  }
  if (err instanceof DsxaError) {
    return { outcome: { kind: 'failure', stage: 'scanner', failure: err.kind, message: err.message }, retryable: err.retryable };
  }
  // Unknown errors (a bug, a stream error mid-transfer) are retried; on the last attempt they end as
  // a scan error rather than a stuck object.
  const message = err instanceof Error ? err.message : String(err);
  return { outcome: { kind: 'failure', stage: 'scanner', failure: 'protocol', message }, retryable: true };
}

export async function scanObject(ctx: PipelineContext, job: Job<ScanTask>, attempt: Attempt): Promise<ScanJobResult> {
  await ctx.hooks.scan?.started?.(job);
  const state = await ctx.resultStates.add(job.idempotency_key);
  // 'scanned': a previous delivery already queued the finalize job; 'finalized': done, or interrupted
  // by a cancel; 'missing': the scope or scan was deleted. None of them is scanned again.
  if (state !== 'pending') return { status: 'skipped', state };
  if (ctx.scanner.unavailable) return defer(ctx, job, attempt);

  const identity = job.object_identity!;
  let outcome: ScanOutcome | undefined;
  let fetchMs: number | null = null;
  let scanMs: number | null = null;
  let size = job.body.size;
  let etag = job.body.etag;
  let versionId = job.body.version_id ?? null;
  // Transient faults (a 503, a dropped connection, a failed read) are first retried here, reopening
  // the object, after a short pause: cheaper than a queue retry, whose backoff starts at ~3 s.
  for (let tryNo = 1; outcome === undefined; tryNo++) {
    const t0 = performance.now();
    try {
      const connector = await ctx.connectors.get(job.integration_id);
      const opened = await connector.open(identity, versionId ? { versionId } : undefined);
      fetchMs = Math.round(performance.now() - t0);
      size = opened.size ?? size;
      // The verdict is about the version read: remediation acts on exactly that one.
      etag = opened.etag ?? etag;
      versionId = opened.versionId ?? versionId;
      try {
        const r = await ctx.dsxa.scanBinary(opened.stream, {
          size: opened.size,
          metadata: `dsx-connect scope=${job.scope_id} key=${job.idempotency_key}`,
          // The monitor lane's scans take the next free scanner slot, ahead of a full scan's waiting ones.
          urgent: job.job_type === TASKS.monitorScanObject,
        });
        outcome = { kind: 'verdict', http_status: r.httpStatus, response: r.response as Record<string, unknown> };
        ctx.scanner.recordSuccess();
        scanMs = Math.round(r.durationMs);
      } finally {
        opened.stream.destroy();
      }
    } catch (err) {
      // The scanner, not the object: wait for it (recorded as the scanner's state, not as an outcome).
      if (err instanceof DsxaError && ctx.scanner.recordFailure(err, job.idempotency_key)) return defer(ctx, job, attempt);
      // The store, not the object: it asks for time (the connector has backed off already).
      const deferrals = job.body.throttle_deferrals ?? 0;
      if (err instanceof ConnectorError && err.kind === 'throttled' && deferrals < THROTTLE_DEFERRALS) {
        return deferThrottled(ctx, job, attempt, deferrals);
      }
      const f = failureOf(err);
      if (f.retryable && tryNo < IN_PROCESS_TRIES) {
        await new Promise((r) => setTimeout(r, 100 * 4 ** (tryNo - 1)));
        continue;
      }
      if (f.retryable && attempt.attempts < attempt.maxAttempts) throw err;
      outcome = f.outcome;
    }
  }

  const payload = childEnvelope(job, FINALIZE_TASK_OF[job.job_type], job.idempotency_key, {
    result: outcome,
    attempts: attempt.attempts,
    fetch_ms: fetchMs,
    scan_ms: scanMs,
    size,
    etag,
    mtime: job.body.mtime,
    version_id: versionId,
  });
  const recorded = await ctx.scanned.add({ idempotency_key: job.idempotency_key, attempts: attempt.attempts, payload });
  return recorded === 'queued' ? { status: 'queued' } : { status: 'skipped', state: recorded };
}
