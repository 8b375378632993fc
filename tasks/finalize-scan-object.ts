/**
 * FinalizeScanObjectJob of full scans: persist and normalize the result, update counters, decide side
 * effects. Scan batches enqueue their finalize envelopes as one graphile-worker batch job (an array
 * payload); each envelope is finalized on its own, and one that fails is retried alone.
 */
import { finalizeObject } from '../src/pipeline/finalize.ts';
import type { FinalizeTask, Job } from '../src/jobs/envelope.ts';
import type { PipelineContext } from '../src/pipeline/context.ts';
import type { Logger } from '../src/log.ts';
import { defineTask } from '../src/worker/define-task.ts';

/** What both lanes' finalize tasks do with one envelope (tasks/monitor-finalize-scan-object.ts). */
export async function finalizeEnvelope(ctx: PipelineContext, job: Job<FinalizeTask>, log: Logger): Promise<string> {
  const status = await finalizeObject(ctx, job);
  if (status === 'missing') log.warn({ key: job.idempotency_key }, 'no scan result row for this key (scope or scan deleted?): nothing to finalize');
  return status;
}

export default defineTask('finalize-scan-object', (ctx, job, _attempt, log) => finalizeEnvelope(ctx, job, log), { batch: true });
