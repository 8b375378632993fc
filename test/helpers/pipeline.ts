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
import { log } from '../../src/log.ts';
import { createPipelineContext, type PipelineContext, type PipelineHooks } from '../../src/pipeline/context.ts';
import { ROLE_TASKS, startWorker, taskFactory, type WorkerHandle } from '../../src/worker/run.ts';
import type { TaskName } from '../../src/jobs/envelope.ts';

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
  args: { dsxaUrl: string; config?: Config; roles?: string[]; concurrency?: number; hooks?: PipelineHooks },
): Promise<WorkerHandle> {
  const w = await startWorker({
    pool,
    config: args.config ?? testConfig(),
    log,
    // Not `maintain` unless asked: a retention sweep at the top of the hour would add audit entries to a test's.
    roles: args.roles ?? Object.keys(ROLE_TASKS).filter((r) => r !== 'maintain'),
    concurrency: args.concurrency ?? 16,
    dsxaUrl: args.dsxaUrl,
    pollIntervalMs: 100,
    hooks: args.hooks,
  });
  t.teardown(() => w.stop());
  return w;
}

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

/** Polls until the scan has finished (completed/failed, or canceled and drained). */
export async function waitForScan(pool: pg.Pool, id: number, timeoutMs = 60_000): Promise<ScanRow> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await getScan(pool, id);
    if (s.finished_at) return s;
    if (Date.now() > deadline) throw new Error(`full scan ${id} did not finish in ${timeoutMs} ms: ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Waits until `check` returns true. */
export async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
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
