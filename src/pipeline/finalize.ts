/**
 * FinalizeScanObjectJob: normalize the scan outcome and hand it to the batched finalization
 * (dsx_private.finalize_results), which persists it and decides the side effects.
 */
import { dsxaResponseSchema } from '../dsxa/types.ts';
import type { FinalizeTask, Job } from '../jobs/envelope.ts';
import type { PipelineContext } from './context.ts';
import { NORMALIZATION_VERSION, normalizeFailure, normalizeVerdict, type Normalized, type ScanFailure } from './outcomes.ts';

/** The normalized outcome of a finalize job's scan result. */
export function normalizeResult(body: Job<FinalizeTask>['body']): Normalized {
  const r = body.result;
  if (r.kind === 'verdict') {
    const parsed = dsxaResponseSchema.safeParse(r.response);
    if (!parsed.success) {
      return normalizeFailure({ stage: 'scanner', kind: 'protocol', message: `unreadable DSXA response: ${parsed.error.issues[0]?.message}` });
    }
    return normalizeVerdict(r.http_status, parsed.data);
  }
  return normalizeFailure({ stage: r.stage, kind: r.failure, message: r.message } as ScanFailure);
}

/** Finalizes one object; 'finalized', 'duplicate' (already finalized: nothing changes) or 'missing'. */
export async function finalizeObject(ctx: PipelineContext, job: Job<FinalizeTask>): Promise<string> {
  const b = job.body;
  const n = normalizeResult(b);
  return ctx.finalizer.add({
    idempotency_key: job.idempotency_key,
    outcome: n.outcome,
    reason: n.reason,
    raw_reason: n.rawReason,
    raw_result: b.result.kind === 'verdict' ? { http_status: b.result.http_status, ...b.result.response } : b.result,
    normalization_version: NORMALIZATION_VERSION,
    attempts: b.attempts,
    fetch_ms: b.fetch_ms,
    scan_ms: b.scan_ms,
    size: b.size,
    etag: b.etag,
    mtime: b.mtime,
    version_id: b.version_id ?? null,
    job_id: job.job_id,
  });
}
