/**
 * The frame every task shares: parse the payload (an invalid one fails with a clear error before
 * anything changes), log through a child logger carrying job id, job type and correlation id, and pass
 * the attempt bookkeeping to the domain code in src/pipeline.
 */
import type { JobHelpers, Task } from 'graphile-worker';
import { parseJob, type Job, type TaskName } from '../jobs/envelope.ts';
import type { PipelineContext } from '../pipeline/context.ts';
import type { Attempt } from '../pipeline/full-scan.ts';
import type { Logger } from '../log.ts';

/** A task module's default export: builds the graphile-worker task from the process's context. */
export type TaskFactory = (ctx: PipelineContext) => Task;

export function defineTask<T extends TaskName>(
  name: T,
  run: (ctx: PipelineContext, job: Job<T>, attempt: Attempt, log: Logger, helpers: JobHelpers) => Promise<unknown>,
): TaskFactory {
  return (ctx) => async (payload, helpers) => {
    const job = parseJob(name, payload);
    const log = ctx.log.child({ task: name, job_id: job.job_id, correlation_id: job.correlation_id, worker_job: helpers.job.id });
    const attempt = { attempts: helpers.job.attempts, maxAttempts: helpers.job.max_attempts };
    const result = await run(ctx, job, attempt, log, helpers);
    log.debug({ result }, `${name} done`);
  };
}
