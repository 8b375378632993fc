/** The benchmark scenarios. Each returns plain figures; ratios are computed within one run. */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { run } from 'graphile-worker';
import pg from 'pg';
import { loadConfig, PROJECT_DIR, type Config } from '../src/config.ts';
import { integrationCreate, scopeCreate } from '../src/db/sql/catalog.ts';
import { fullScanStart } from '../src/db/sql/full-scans.ts';
import { QueueStatistics } from '../src/db/queue-stats.ts';
import { DsxaClient } from '../src/dsxa/client.ts';
import { SyntheticConnector } from '../src/connectors/synthetic.ts';
import { log } from '../src/log.ts';
import { ALL_ROLES, startWorker, workerLogger, workerPoolSize, workerPreset } from '../src/worker/run.ts';
import type { IntegrationSpec } from './cloud-store.ts';
import type { CpuMeter } from './cpu.ts';
import type { JsProfiler } from './js-profile.ts';
import { startEmulatorProcess, type BenchServer } from './env.ts';

export interface BenchOptions {
  objects: number;
  concurrency: number;
  /** Enumeration page size (DSX_PAGE_SIZE of the workers); 1,000 unless --page-size says otherwise. */
  pageSize?: number;
  /** --profile: scenarios that support it also report pg_stat_statements (costs ~15% throughput). */
  profile?: boolean;
}

export const quiet = log.child({});
quiet.level = 'warn';

export function benchConfig(o: BenchOptions, extra: Partial<Config> = {}): Config {
  return { ...loadConfig({}), workerConcurrency: o.concurrency, dsxaMaxInFlight: 64, pageSize: o.pageSize ?? 1000, ...extra };
}

/** Trivial jobs through the same worker configuration the product uses: the queue's own ceiling. */
export async function ceiling(server: BenchServer, o: BenchOptions) {
  const { pool } = await server.database('bench_ceiling', workerPoolSize(o.concurrency));
  const n = o.objects;
  await pool.query(
    `select graphile_worker.add_jobs(array(select row('noop', '{}'::json, null, null, null, null, null, null)::graphile_worker.job_spec from generate_series(1, $1)))`,
    [n],
  );
  // Planner statistics for the filled table, as the product keeps them while a scan fills the queue
  // (src/db/queue-stats.ts); without them every fetch scans and sorts the whole table.
  await new QueueStatistics(pool, quiet, 0).refresh();
  let done = 0;
  let resolveDone!: () => void;
  const finished = new Promise<void>((r) => (resolveDone = r));
  const t0 = performance.now();
  const runner = await run({
    pgPool: pool,
    taskList: { noop: async () => { if (++done === n) resolveDone(); } },
    noHandleSignals: true,
    logger: workerLogger(quiet),
    preset: workerPreset(o.concurrency, 100),
  });
  await finished;
  const seconds = (performance.now() - t0) / 1000;
  await runner.stop();
  await pool.end();
  return { jobs: n, seconds, jobs_per_s: n / seconds };
}

async function waitFinished(pool: pg.Pool, id: number): Promise<void> {
  for (;;) {
    const { rows } = await pool.query('select finished_at from dsx.full_scans where id = $1', [id]);
    if (rows[0]?.finished_at) return;
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** What a full scan scans (default: a synthetic scope of `objects`), and a meter around its timed part. */
export interface ScanTarget {
  /** The integration whose whole root is scanned. */
  integration?: IntegrationSpec;
  /** Started when the scan is started, stopped when it has finished: the CPU profile of the scan. */
  meter?: CpuMeter;
  /** Likewise: where this process's CPU went, by package (when BENCH_CPU_PROFILE is set). */
  profiler?: JsProfiler;
}

/** A full scan of a whole integration (synthetic by default) through every stage, DSXA emulator in its own process. */
export async function fullScan(server: BenchServer, o: BenchOptions, name: string, emu: { url: string }, extra: Partial<Config> = {}, target: ScanTarget = {}) {
  const { pool } = await server.database(name, workerPoolSize(o.concurrency));
  const spec = target.integration ?? { kind: 'synthetic', settings: { objects: o.objects }, credentials: null };
  const integ = await integrationCreate(pool, { name: spec.kind, kind: spec.kind, settings: spec.settings, credentials: spec.credentials });
  const scope = await scopeCreate(pool, { integrationId: integ.id, name: spec.kind, root: '', include: [], exclude: [], policy: {}, monitor: false });
  const config = benchConfig(o, extra);
  const worker = await startWorker({ pool, config, log: quiet, roles: ALL_ROLES, dsxaUrl: emu.url, pollIntervalMs: 100 });
  await target.profiler?.start();
  target.meter?.start();
  const t0 = performance.now();
  const { fullScanId } = await fullScanStart(pool, scope.id, 'bench');
  await waitFinished(pool, fullScanId);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = target.meter?.stop(o.objects);
  const jsProfile = await target.profiler?.stop();
  const { rows } = await pool.query('select status, discovered::int, finalized::int, malicious_count::int from dsx.full_scans where id = $1', [fullScanId]);
  // Where the database time went (track_functions is on in the bench server): the profile to read
  // before changing anything on the hot path.
  const profile = await pool.query(
    `select schemaname || '.' || funcname as function, calls::int, round(total_time)::int as total_ms, round(self_time)::int as self_ms
       from pg_stat_user_functions order by total_time desc limit 6`,
  );
  await worker.stop();
  await pool.end();
  return { objects: o.objects, seconds, objects_per_s: o.objects / seconds, ...rows[0], sql_profile: profile.rows, ...(cpu ? { cpu } : {}), ...(jsProfile ? { js_profile: jsProfile } : {}) };
}

/** Scenario 2: pipeline overhead against the queue ceiling, measured back to back. */
export async function overhead(server: BenchServer, o: BenchOptions) {
  const emu = await startEmulatorProcess({ latencyMs: 0, capacity: 256 });
  try {
    // The ceiling is measured right before and right after the pipeline, on a quiet server each time;
    // the better of the two is the denominator (the conservative ratio).
    const jobs = Math.max(20_000, Math.min(o.objects, 100_000));
    const before = await ceiling(server, { ...o, objects: jobs });
    const pipeline = await fullScan(server, o, 'bench_overhead', emu);
    const after = await ceiling(server, { ...o, objects: jobs });
    const queue = before.jobs_per_s >= after.jobs_per_s ? before : after;
    const ratio = pipeline.objects_per_s / queue.jobs_per_s;
    return { pipeline, ceiling: queue, ceiling_runs_jobs_per_s: [before.jobs_per_s, after.jobs_per_s], ratio, target_ratio: 0.25, holds: ratio >= 0.25 };
  } finally {
    await emu.stop();
  }
}

/** Scenario 3: emulator at 40 ms and 8 scans at once; the pipeline against a direct loop of 8 in flight. */
export async function scannerBound(server: BenchServer, o: BenchOptions) {
  const emu = await startEmulatorProcess({ latencyMs: 40, capacity: 8 });
  try {
    const connector = new SyntheticConnector({ objects: o.objects });
    const client = new DsxaClient({ url: emu.url, maxInFlight: 8 });
    let next = 1;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next <= o.objects) {
          const i = next++;
          await client.scanBinary(connector.contents(i));
        }
      }),
    );
    const direct = { objects: o.objects, seconds: (performance.now() - t0) / 1000, objects_per_s: 0 };
    direct.objects_per_s = o.objects / direct.seconds;
    client.close();
    const pipeline = await fullScan(server, o, 'bench_scanner_bound', emu, { dsxaMaxInFlight: 8 });
    const ratio = pipeline.objects_per_s / direct.objects_per_s;
    return { pipeline, direct, ratio, target_ratio: 0.95, holds: ratio >= 0.95 };
  } finally {
    await emu.stop();
  }
}

/** Peak resident set of a process so far (Linux VmHWM), in MB. */
function peakRssMb(pid: number): number | null {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : null;
  } catch {
    return null;
  }
}

/**
 * Scenario 4: enumeration alone, in its own `dsx-connect worker --roles enumerate` process: objects
 * discovered and durably enqueued per second, and that process's peak RSS at 100k and at the end.
 */
export async function enumeration(server: BenchServer, o: BenchOptions) {
  const { url, pool } = await server.database('bench_enumeration', 4);
  const integ = await integrationCreate(pool, { name: 'synthetic', kind: 'synthetic', settings: { objects: o.objects } });
  const scope = await scopeCreate(pool, { integrationId: integ.id, name: 'synthetic', root: '', include: [], exclude: [], policy: {}, monitor: false });
  const proc = spawn(process.execPath, [path.join(PROJECT_DIR, 'src/cli/main.ts'), 'worker', '--roles', 'enumerate'], {
    env: { ...process.env, DATABASE_URL: url, DSX_PAGE_SIZE: String(o.pageSize ?? 1000), DSX_LOG_LEVEL: 'warn' },
    stdio: 'ignore',
  });
  const checkpoint = Math.min(100_000, o.objects);
  let atCheckpoint: number | null = null;
  const t0 = performance.now();
  const { fullScanId } = await fullScanStart(pool, scope.id, 'bench');
  for (;;) {
    const { rows } = await pool.query('select discovered::int as d, enumeration_exhausted as x from dsx.full_scans where id = $1', [fullScanId]);
    if (atCheckpoint === null && rows[0].d >= checkpoint) atCheckpoint = peakRssMb(proc.pid!);
    if (rows[0].x) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const seconds = (performance.now() - t0) / 1000;
  const atEnd = peakRssMb(proc.pid!);
  await new Promise((r) => {
    proc.once('exit', r);
    proc.kill('SIGTERM');
  });
  const { rows } = await pool.query(
    `select (select count(*)::int from dsx.scan_results) as results,
            (select count(*)::int from graphile_worker._private_jobs) as queued_jobs`,
  );
  await pool.end();
  const rate = o.objects / seconds;
  return {
    objects: o.objects,
    seconds,
    objects_per_s: rate,
    ...rows[0],
    peak_rss_mb_at_100k: atCheckpoint,
    peak_rss_mb_at_end: atEnd,
    targets: { objects_per_s: 20_000, peak_rss_mb: 200, rss_growth: 0.1 },
    holds: {
      rate: rate >= 20_000,
      rss_under_200mb: atEnd !== null && atEnd < 200,
      rss_within_10_percent: atEnd !== null && atCheckpoint !== null && atEnd <= atCheckpoint * 1.1,
    },
  };
}

/** Scenario 7: scenario 2 on a real directory tree of small files. */
export async function filesystem(server: BenchServer, o: BenchOptions) {
  const { generateTree } = await import('../src/testing/tree.ts');
  const fs = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-bench-fs-'));
  const emu = await startEmulatorProcess({ latencyMs: 0, capacity: 256 });
  try {
    generateTree(dir, { files: o.objects });
    const { pool } = await server.database('bench_filesystem', workerPoolSize(o.concurrency));
    const integ = await integrationCreate(pool, { name: 'fs', kind: 'filesystem', settings: { root: dir } });
    const scope = await scopeCreate(pool, { integrationId: integ.id, name: 'fs', root: '', include: [], exclude: [], policy: {}, monitor: false });
    const worker = await startWorker({ pool, config: benchConfig(o), log: quiet, roles: ALL_ROLES, dsxaUrl: emu.url, pollIntervalMs: 100 });
    const t0 = performance.now();
    const { fullScanId } = await fullScanStart(pool, scope.id, 'bench');
    await waitFinished(pool, fullScanId);
    const seconds = (performance.now() - t0) / 1000;
    await worker.stop();
    await pool.end();
    return { files: o.objects, seconds, objects_per_s: o.objects / seconds };
  } finally {
    await emu.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
