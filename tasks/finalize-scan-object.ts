/**
 * FinalizeScanObjectJob: persist and normalize the result, update counters, decide side effects.
 * Scan batches enqueue their finalize envelopes as one graphile-worker batch job (an array payload);
 * each envelope is finalized on its own, and one that fails is retried alone.
 */
import { finalizeObject } from '../src/pipeline/finalize.ts';
import { defineTask } from '../src/worker/define-task.ts';

export default defineTask('finalize-scan-object', async (ctx, job, _attempt, log) => {
  const status = await finalizeObject(ctx, job);
  if (status === 'missing') log.warn({ key: job.idempotency_key }, 'no scan result row for this key (scope or scan deleted?): nothing to finalize');
  return status;
}, { batch: true });
