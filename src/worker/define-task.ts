/**
 * The frame every task shares: parse the payload, log through a child logger carrying job id, job type
 * and correlation id, and pass the attempt bookkeeping to the domain code in src/pipeline. A payload that
 * can never be valid is recorded in dsx.invalid_jobs (with the fields named) and the job completes:
 * graphile-worker would otherwise retry it up to max_attempts over days for nothing. One of a newer
 * schema version (a rolling deploy) is thrown, so it is retried until an upgraded worker takes it.
 */
import type { JobHelpers, Task } from 'graphile-worker';
import { invalidJobRecord } from '../db/sql/invalid-jobs.ts';
import { InvalidPayloadError, parseJob, type Job, type WorkerTaskName } from '../jobs/envelope.ts';
import type { PipelineContext } from '../pipeline/context.ts';
import type { Attempt } from '../pipeline/full-scan.ts';
import type { Logger } from '../log.ts';

/** A task module's default export: builds the graphile-worker task of `T` from the process's context. */
export type TaskFactory<T extends WorkerTaskName = WorkerTaskName> = (ctx: PipelineContext) => Task<T>;

export interface TaskOptions {
  /**
   * The task also accepts a graphile-worker "batch job": a payload that is an array of envelopes. Each
   * envelope runs as its own job would and gets its own promise; graphile-worker retries a batch that
   * partly failed with only the failed envelopes in it.
   */
  batch?: boolean;
}

/** SQLSTATE class 22, data exception: the database refuses a value, whenever it is sent again. */
function isDataException(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('22');
}

export function defineTask<T extends WorkerTaskName>(
  name: T,
  run: (ctx: PipelineContext, job: Job<T>, attempt: Attempt & { jobId: string }, log: Logger, helpers: JobHelpers) => Promise<unknown>,
  opts: TaskOptions = {},
): TaskFactory<T> {
  return (ctx) => {
    const runOne = async (payload: unknown, helpers: JobHelpers): Promise<void> => {
      let job: Job<T>;
      try {
        job = parseJob(name, payload);
      } catch (err) {
        if (!(err instanceof InvalidPayloadError)) throw err;
        ctx.log.error({ task: name, worker_job: helpers.job.id, err: err.message }, 'invalid job payload: recorded in dsx.invalid_jobs, not retried');
        await invalidJobRecord(ctx.pool, { task: name, workerJobId: String(helpers.job.id), error: err.message, payload });
        return;
      }
      const log = ctx.log.child({ task: name, job_id: job.job_id, correlation_id: job.correlation_id, worker_job: helpers.job.id });
      const attempt = { attempts: helpers.job.attempts, maxAttempts: helpers.job.max_attempts, jobId: String(helpers.job.id) };
      let result: unknown;
      try {
        result = await run(ctx, job, attempt, log, helpers);
      } catch (err) {
        // A value PostgreSQL refuses (a NUL character, an out-of-range number) fails the same way every
        // time: the payload is invalid after all. Recorded and completed, as above; retried, graphile-worker
        // could not even record the failure (it stores the payload back, and the database refuses it).
        if (!isDataException(err)) throw err;
        const message = `invalid ${name} payload: the database refuses a value of it (${(err as Error).message})`;
        log.error({ err: message }, 'invalid job payload: recorded in dsx.invalid_jobs, not retried');
        await invalidJobRecord(ctx.pool, { task: name, workerJobId: String(helpers.job.id), error: message, payload });
        return;
      }
      log.debug({ result }, `${name} done`);
    };
    // The payload is typed for producers (GraphileWorker.Tasks); here it is unknown until parseJob accepts it.
    return async (payload: unknown, helpers: JobHelpers) => {
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
