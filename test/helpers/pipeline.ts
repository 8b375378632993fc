/**
 * Test factories for the pipeline: configuration, an emulator, in-process workers, catalog rows, a
 * manual stepper that runs queued jobs one by one through the real task code (to build half-done and
 * redelivered states deterministically), and waits on scan completion.
 */
import path from 'node:path';
import type pg from 'pg';
import type { Test } from 'tap';
import type { JobHelpers } from 'graphile-worker';
import { loadConfig, type Config } from '../../src/config.ts';
import { integrationCreate, scopeCreate } from '../../src/db/sql/catalog.ts';
import { startEmulator, type EmulatorOptions } from '../../src/dsxa/emulator.ts';
import { log, type Logger } from '../../src/log.ts';
import { createPipelineContext, type PipelineContext, type PipelineHooks } from '../../src/pipeline/context.ts';
import { ROLE_TASKS, startWorker, taskFactory, type WorkerHandle } from '../../src/worker/run.ts';
import type { TaskName } from '../../src/jobs/envelope.ts';
import { jobEvents, notifications, waitFor, type Wake } from './wait.ts';

export { waitFor };

export function testConfig(overrides: Partial<Config> = {}): Config {
  // Test receivers live on loopback: webhooks to private addresses are allowed unless a test says otherwise.
  // Quarantined files (default <dataDir>/quarantine/<integration id>) go to the run's temporary data
  // directory (test/run.ts), one per test file: integration ids repeat across the files' databases.
  const testData = process.env.DSX_TEST_DATA_DIR;
  const dataDir = testData ? path.join(testData, String(process.pid)) : undefined;
  return { ...loadConfig({}), ...(dataDir && { dataDir }), pageSize: 100, scanMaxAttempts: 3, workerConcurrency: 16, webhookAllowPrivate: true, ...overrides };
}

export async function emulator(t: Test, opts: EmulatorOptions = {}) {
  const emu = await startEmulator({ port: 0, ...opts });
  t.teardown(() => emu.close());
  return emu;
}

export async function workers(
  t: Test,
  pool: pg.Pool,
  args: { dsxaUrl: string; config?: Config; roles?: string[]; concurrency?: number; hooks?: PipelineHooks; log?: Logger },
): Promise<WorkerHandle> {
  const w = await startWorker({
    pool,
    config: args.config ?? testConfig(),
    log: args.log ?? log,
    // Not `maintain` unless asked: a retention sweep at the top of the hour would add audit entries to a test's.
    roles: args.roles ?? Object.keys(ROLE_TASKS).filter((r) => r !== 'maintain'),
    concurrency: args.concurrency ?? 16,
    dsxaUrl: args.dsxaUrl,
    pollIntervalMs: 100,
    hooks: args.hooks,
  });
  const done = new Set<string>();
  for (const r of w.runners) r.events.on('job:success', ({ job }) => void done.add(String(job.id)));
  succeeded.set(w, done);
  t.teardown(() => w.stop());
  return w;
}

/** Ids of the jobs each worker started by `workers()` ran successfully (graphile-worker deletes them a moment later). */
const succeeded = new WeakMap<WorkerHandle, Set<string>>();

export async function fsScope(
  pool: pg.Pool,
  args: { dir: string; name?: string; root?: string; policy?: unknown; include?: string[]; exclude?: string[]; settings?: Record<string, unknown> },
) {
  const name = args.name ?? 'fs';
  const integration = await integrationCreate(pool, { name, kind: 'filesystem', settings: { root: args.dir, ...args.settings } });
  return scopeCreate(pool, {
    integrationId: integration.id,
    name,
    root: args.root ?? '',
    include: args.include ?? [],
    exclude: args.exclude ?? [],
    policy: args.policy ?? {},
    monitor: false,
  });
}

export async function syntheticScope(pool: pg.Pool, args: { objects: number; name?: string; settings?: Record<string, unknown> }) {
  const name = args.name ?? 'synthetic';
  const integration = await integrationCreate(pool, { name, kind: 'synthetic', settings: { objects: args.objects, ...args.settings } });
  return scopeCreate(pool, { integrationId: integration.id, name, root: '', include: [], exclude: [], policy: {}, monitor: false });
}

export interface ScanRow {
  id: number;
  status: string;
  discovered: number;
  finalized: number;
  pages: number;
  enumeration_exhausted: boolean;
  finished_at: Date | null;
  clean_count: number;
  malicious_count: number;
  unable_to_scan_count: number;
  unsupported_type_count: number;
  fetch_failed_count: number;
  timeout_count: number;
  policy_blocked_count: number;
  canceled_count: number;
  error: string | null;
}

export async function getScan(pool: pg.Pool, id: number): Promise<ScanRow> {
  const { rows } = await pool.query(
    `select id::int, status, discovered::int, finalized::int, pages, enumeration_exhausted, finished_at,
            clean_count::int, malicious_count::int, unable_to_scan_count::int, unsupported_type_count::int,
            fetch_failed_count::int, timeout_count::int, policy_blocked_count::int, canceled_count::int, error
       from dsx.full_scans where id = $1`,
    [id],
  );
  return rows[0] as ScanRow;
}

/** A wake on the scan's status changes and progress (the NOTIFYs of sql/functions/10_common.sql and 30_full_scans.sql). */
export function scanEvents(pool: pg.Pool, id: number): Wake {
  return notifications(pool, 'dsx_full_scan', `dsx_full_scan:${id}`);
}

/**
 * Waits until the scan has finished (completed/failed, or canceled and drained), re-reading it on its
 * NOTIFYs: every change of finished_at announces itself on 'dsx_full_scan'.
 */
export async function waitForScan(pool: pg.Pool, id: number, timeoutMs = 60_000): Promise<ScanRow> {
  let s: ScanRow | undefined;
  await waitFor(async () => !!(s = await getScan(pool, id)).finished_at, `full scan ${id} to finish`, timeoutMs, notifications(pool, 'dsx_full_scan')).catch(
    (err: Error) => {
      throw new Error(`${err.message}: ${JSON.stringify(s)}`);
    },
  );
  return s!;
}

/** Waits until the scan has finalized at least `n` objects, re-reading it on its progress NOTIFYs. */
export async function waitForFinalized(pool: pg.Pool, id: number, n: number, timeoutMs = 60_000): Promise<ScanRow> {
  let s: ScanRow | undefined;
  await waitFor(async () => (s = await getScan(pool, id)).finalized >= n || !!s.finished_at, `full scan ${id} to finalize ${n} objects`, timeoutMs, scanEvents(pool, id));
  return s!;
}

/**
 * Waits until graphile-worker's job table is empty, except the jobs `ignore` accepts: nothing queued,
 * running or waiting for a retry, and the rows of the jobs `worker` ran deleted by its completion
 * batch too (dsx.verify_full_scan counts them). Re-checked whenever one of the worker's jobs completes
 * and at its local queue's fetches; after this, nothing of the pipeline changes by itself.
 */
export async function waitForEmptyQueue(
  pool: pg.Pool,
  worker: WorkerHandle,
  timeoutMs = 30_000,
  ignore: (job: { id: string; task: string; locked: boolean }) => boolean = () => false,
): Promise<void> {
  if (!succeeded.has(worker)) throw new Error('waitForEmptyQueue needs a worker started by workers()');
  let left: string[] = [];
  await waitFor(
    async () => {
      const { rows } = await pool.query<{ id: string; task: string; locked: boolean }>(
        `select j.id::text, t.identifier as task, j.locked_at is not null as locked
           from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id`,
      );
      left = rows.filter((r) => !ignore(r)).map((r) => `${r.task} ${r.id}${r.locked ? ' (running)' : ''}`);
      return left.length === 0;
    },
    'the job queue to empty',
    timeoutMs,
    // A job that succeeded before workers() returned is deleted with no event of its own, and a failed
    // one is unlocked after its job:complete; the local queue's next fetch (at the latest after the
    // worker's 100 ms poll interval) re-checks.
    jobEvents(worker, 'job:complete', 'localQueue:getJobs:complete'),
  ).catch((err: Error) => {
    throw new Error(`${err.message} (left: ${left.slice(0, 5).join(', ')}${left.length > 5 ? ', ...' : ''})`);
  });
}

/**
 * Waits until the full scan's invariant "no scan job left queued or locked" holds: its last jobs ran
 * and graphile-worker's completion batch deleted their rows (which happens after the scan completed,
 * with no event of its own: re-checked on the worker's job events and its local queue's fetches, every
 * poll interval at the latest). Call it before asserting on dsx.verify_full_scan.
 */
export async function waitForScanJobsGone(pool: pg.Pool, worker: WorkerHandle, fullScanId: number | string, timeoutMs = 30_000): Promise<void> {
  await waitFor(
    async () => {
      const { rows } = await pool.query<{ ok: boolean }>(
        `select ok from dsx.verify_full_scan($1) where check_name = 'no scan job left queued or locked'`,
        [fullScanId],
      );
      return rows.length > 0 && rows[0]!.ok;
    },
    "the scan's last job rows to be deleted",
    timeoutMs,
    jobEvents(worker, 'job:complete', 'localQueue:getJobs:complete'),
  );
}

export interface QueuedJob {
  id: string;
  task: string;
  payload: unknown;
  attempts: number;
  max_attempts: number;
}

/** Jobs waiting in graphile-worker's queue, oldest first. */
export async function queuedJobs(pool: pg.Pool, task?: string): Promise<QueuedJob[]> {
  const { rows } = await pool.query(
    `select j.id::text, t.identifier as task, j.payload, j.attempts, j.max_attempts
       from graphile_worker._private_jobs j join graphile_worker._private_tasks t on t.id = j.task_id
      where ($1::text is null or t.identifier = $1) order by j.priority, j.run_at, j.id`,
    [task ?? null],
  );
  return rows as QueuedJob[];
}

/**
 * Runs queued jobs through the real task code without a worker, one at a time, so a test can stop at
 * any point, run a job twice, or change the world between two jobs. `complete` removes the job as a
 * worker would after success.
 */
export class Stepper {
  readonly ctx: PipelineContext;
  readonly #pool: pg.Pool;

  constructor(pool: pg.Pool, args: { dsxaUrl: string; config?: Config }) {
    this.#pool = pool;
    this.ctx = createPipelineContext({ pool, config: args.config ?? testConfig(), log, dsxaUrl: args.dsxaUrl });
  }

  /** Runs one job's payload through its task (attempt numbers can be forced). */
  async run(job: QueuedJob, attempt?: { attempts: number; maxAttempts: number }): Promise<void> {
    const task = job.task as TaskName;
    const factory = taskFactory(task);
    if (!factory) throw new Error(`no task ${job.task}`);
    const helpers = {
      job: { id: job.id, attempts: attempt?.attempts ?? 1, max_attempts: attempt?.maxAttempts ?? job.max_attempts },
    } as unknown as JobHelpers;
    const out = await factory(this.ctx)(job.payload as never, helpers);
    // A batch job: like graphile-worker, wait for every envelope; the job failed if any of them did.
    if (Array.isArray(out)) {
      const failed = (await Promise.allSettled(out)).filter((r) => r.status === 'rejected');
      if (failed.length > 0) throw (failed[0] as PromiseRejectedResult).reason;
    }
  }

  async complete(job: QueuedJob): Promise<void> {
    await this.#pool.query('select graphile_worker.complete_jobs(array[$1::bigint])', [job.id]);
  }

  /** Runs and completes every queued job of `task` (as queued now); returns how many ran. */
  async drain(task: string): Promise<number> {
    const jobs = await queuedJobs(this.#pool, task);
    for (const j of jobs) {
      await this.run(j);
      await this.complete(j);
    }
    return jobs.length;
  }

  /** Runs every queued job, stage by stage, until the queue is empty. */
  async runAll(limit = 100_000): Promise<void> {
    for (let i = 0; i < limit; i++) {
      const [next] = await queuedJobs(this.#pool);
      if (!next) return;
      await this.run(next);
      await this.complete(next);
    }
    throw new Error('queue did not empty');
  }
}
