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

export interface TaskOptions {
  /**
   * The task also accepts a graphile-worker "batch job": a payload that is an array of envelopes. Each
   * envelope runs as its own job would and gets its own promise; graphile-worker retries a batch that
   * partly failed with only the failed envelopes in it.
   */
  batch?: boolean;
}

export function defineTask<T extends TaskName>(
  name: T,
  run: (ctx: PipelineContext, job: Job<T>, attempt: Attempt & { jobId: string }, log: Logger, helpers: JobHelpers) => Promise<unknown>,
  opts: TaskOptions = {},
): TaskFactory {
  return (ctx) => {
    const runOne = async (payload: unknown, helpers: JobHelpers): Promise<void> => {
      const job = parseJob(name, payload);
      const log = ctx.log.child({ task: name, job_id: job.job_id, correlation_id: job.correlation_id, worker_job: helpers.job.id });
      const attempt = { attempts: helpers.job.attempts, maxAttempts: helpers.job.max_attempts, jobId: String(helpers.job.id) };
      const result = await run(ctx, job, attempt, log, helpers);
      log.debug({ result }, `${name} done`);
    };
    return async (payload, helpers) => {
      if (opts.batch && Array.isArray(payload)) {
        return payload.map((p) => {
          const done = runOne(p, helpers);
          done.catch(() => {}); // settled by graphile-worker (Promise.allSettled), never unhandled
          return done;
        });
      }
      await runOne(payload, helpers);
    };
  };
}
