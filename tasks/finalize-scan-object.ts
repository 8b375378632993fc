/** FinalizeScanObjectJob: persist and normalize the result, update counters, decide side effects. */
import { finalizeObject } from '../src/pipeline/finalize.ts';
import { defineTask } from '../src/worker/define-task.ts';

export default defineTask('finalize-scan-object', async (ctx, job, _attempt, log) => {
  const status = await finalizeObject(ctx, job);
  if (status === 'missing') log.warn({ key: job.idempotency_key }, 'no scan result row for this key (scope or scan deleted?): nothing to finalize');
  return status;
});
