/**
 * Scenario `scale`: one synthetic full scan of 2,000,000 objects (`--objects`) with an instant scanner
 * (the emulator in its own process, no latency), run by the five roles as separate `dsx-connect worker`
 * processes against one database. It shows whether cost per object stays constant with scope size:
 * - objects/s over the first and the last 10% of finalizations (target: last >= 0.9 x first);
 * - the largest number of rows in graphile-worker's job table, sampled every 200 ms and exactly (by
 *   commit, bench/queue-peak.ts) (target: <= the admission window + a small constant);
 * - database size per object after completion, and each table's size;
 * - peak RSS of every process at 100,000 finalized objects and at the end (target: within 10%), and
 *   CPU seconds per role process and per role's PostgreSQL backends (for sizing).
 */
import type pg from 'pg';
import { integrationCreate, scopeCreate } from '../src/db/sql/catalog.ts';
import { fullScanStart } from '../src/db/sql/full-scans.ts';
import { startEmulatorProcess, trackStatements, type BenchServer } from './env.ts';
import { queuePeakInstall, queuePeakRead, queuePeakRemove } from './queue-peak.ts';
import { sampleUntilFinished, type Sample } from './scan-sampler.ts';
import type { BenchOptions } from './scenarios.ts';
import {
  applicationName,
  cpuSeconds,
  PostgresUsage,
  residentMb,
  round2,
  scaledOut,
  startRoleProcesses,
  stopRoleProcesses,
  type RoleProcess,
} from './worker-processes.ts';

/** Objects finalized at which the first RSS reading is taken (the "at 100k"). */
const RSS_CHECKPOINT = 100_000;
/** The job table's peak may exceed the window by this much: listing jobs, side effects, retries. */
const QUEUE_SLACK = 100;

/** Memory of every role process (peak so far) and of PostgreSQL (peak PSS and private memory so far). */
interface MemorySnapshot {
  finalized: number;
  processes_peak_rss_mb: Record<string, number | null>;
  postgres_peak_pss_mb: number;
  postgres_peak_private_mb: number;
}

function memorySnapshot(finalized: number, roles: RoleProcess[], pgUsage: PostgresUsage): MemorySnapshot {
  const processes: Record<string, number | null> = {};
  for (const r of roles) processes[r.spec.name] = residentMb(r.pid)?.peak ?? null;
  return { finalized, processes_peak_rss_mb: processes, postgres_peak_pss_mb: pgUsage.peakPssMb, postgres_peak_private_mb: pgUsage.peakPrivateMb };
}

/** Environment of the role processes: the bench's scanner, page size and the scan's in-flight limit. */
export function roleEnv(o: BenchOptions, dsxaUrl: string): NodeJS.ProcessEnv {
  return {
    DSXA_URL: dsxaUrl,
    DSX_PAGE_SIZE: String(o.pageSize ?? 1000),
    // As the in-process scenarios run it (benchConfig): 64 scans in flight per scan process.
    DSXA_MAX_IN_FLIGHT: '64',
    // The default admission window is sized from it (config.ts, defaultScanWindow).
    DSX_WORKER_CONCURRENCY: String(o.concurrency),
  };
}

/** A synthetic integration of `objects` objects and a scope over all of it; returns the scope id. */
export async function syntheticScope(pool: pg.Pool, name: string, objects: number): Promise<number> {
  const integ = await integrationCreate(pool, { name, kind: 'synthetic', settings: { objects } });
  const scope = await scopeCreate(pool, { integrationId: integ.id, name, root: '', include: [], exclude: [], policy: {}, monitor: false });
  return scope.id;
}

/** Finalization rate per tenth of a scan's objects, from finalized_at (in finalization order). */
async function ratesByTenth(pool: pg.Pool, scanId: number, objects: number) {
  const { rows } = await pool.query<{ t: Date[] }>(
    `select percentile_disc(array[0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1]) within group (order by finalized_at) as t
       from dsx.scan_results where full_scan_id = $1`,
    [scanId],
  );
  const t = rows[0]!.t.map((d) => d.getTime());
  return t.slice(1).map((end, i) => Math.round(objects / 10 / Math.max(0.001, (end - t[i]!) / 1000)));
}

/** The database's size, per object, and every table of the product's schemas with its indexes and TOAST. */
export async function databaseSizes(pool: pg.Pool, objects: number) {
  const { rows: db } = await pool.query<{ bytes: string }>('select pg_database_size(current_database()) as bytes');
  const { rows: tables } = await pool.query<{ table: string; bytes: string; rows: string; dead: string }>(
    `select schemaname || '.' || relname as table, pg_total_relation_size(relid) as bytes, n_live_tup as rows, n_dead_tup as dead
       from pg_stat_all_tables where schemaname in ('dsx', 'dsx_private', 'graphile_worker', 'public')
      order by pg_total_relation_size(relid) desc`,
  );
  const bytes = Number(db[0]!.bytes);
  return {
    database_bytes: bytes,
    bytes_per_object: Math.round(bytes / objects),
    tables: tables
      .filter((r) => Number(r.bytes) >= 64 * 1024)
      .map((r) => ({ table: r.table, bytes: Number(r.bytes), bytes_per_object: round2(Number(r.bytes) / objects), live_rows: Number(r.rows), dead_rows: Number(r.dead) })),
  };
}

/** Where the database time went: SQL functions (always) and, with --profile, the statements inside them. */
export async function sqlProfile(pool: pg.Pool, objects: number, statements: boolean) {
  const perObject = (ms: number) => round2((ms * 1000) / objects);
  const { rows: fns } = await pool.query<{ function: string; calls: number; total_ms: number; self_ms: number }>(
    `select schemaname || '.' || funcname as function, calls::int, total_time as total_ms, self_time as self_ms
       from pg_stat_user_functions order by total_time desc limit 8`,
  );
  const functions = fns.map((f) => ({ function: f.function, calls: f.calls, total_us_per_object: perObject(f.total_ms), self_us_per_object: perObject(f.self_ms) }));
  if (!statements) return { functions };
  const { rows: st } = await pool.query<{ query: string; calls: string; total_ms: number; rows: string; toplevel: boolean }>(
    `select left(regexp_replace(query, '\\s+', ' ', 'g'), 160) as query, calls, total_exec_time as total_ms, rows, toplevel
       from pg_stat_statements where dbid = (select oid from pg_database where datname = current_database())
      order by total_exec_time desc limit 25`,
  );
  return {
    functions,
    statements: st.map((s) => ({ query: s.query, toplevel: s.toplevel, calls: Number(s.calls), rows: Number(s.rows), us_per_object: perObject(s.total_ms) })),
  };
}

/** CPU seconds of each role process now (read once the processes are up, so start-up is not counted). */
export function roleCpu(roles: RoleProcess[]): Record<string, number | null> {
  return Object.fromEntries(roles.map((r) => [r.spec.name, cpuSeconds(r.pid)]));
}

/** CPU seconds since `since` (roleCpu) and peak RSS of each role process (read before they are stopped). */
export function roleFigures(roles: RoleProcess[], objects: number, since: Record<string, number | null>) {
  const out: Record<string, { roles: string; concurrency: number; cpu_s: number | null; cpu_us_per_object: number | null; peak_rss_mb: number | null }> = {};
  for (const r of roles) {
    const now = cpuSeconds(r.pid);
    const cpu = now === null ? null : now - (since[r.spec.name] ?? 0);
    out[r.spec.name] = {
      roles: r.spec.roles,
      concurrency: r.spec.concurrency,
      cpu_s: cpu === null ? null : round2(cpu),
      cpu_us_per_object: cpu === null ? null : round2((cpu * 1e6) / objects),
      peak_rss_mb: residentMb(r.pid)?.peak ?? null,
    };
  }
  return out;
}

/** PostgreSQL's CPU per role process (its backends'), keyed by role name instead of application_name. */
export function postgresCpu(pgUsage: PostgresUsage, roles: RoleProcess[], objects: number) {
  const cpu = pgUsage.cpu();
  if (!cpu) return null;
  const byRole: Record<string, number> = {};
  const names = new Map(roles.map((r) => [applicationName(r.spec), r.spec.name]));
  for (const [app, s] of Object.entries(cpu.by_application)) byRole[names.get(app) ?? app] = s;
  return { total_s: cpu.total, us_per_object: round2((cpu.total * 1e6) / objects), backends_by_role_s: byRole };
}

export async function scale(server: BenchServer, o: BenchOptions & { profile?: boolean }) {
  const emu = await startEmulatorProcess({ latencyMs: 0, capacity: 256 });
  const { url, pool } = await server.database('bench_scale', 6);
  let roles: RoleProcess[] = [];
  try {
    const profiled = o.profile ? await trackStatements(pool, 'bench_scale') : false;
    const scopeId = await syntheticScope(pool, 'synthetic', o.objects);
    const baseline = await queuePeakInstall(pool);
    const pgUsage = await PostgresUsage.attach(pool);
    const specs = scaledOut(o.concurrency);
    roles = await startRoleProcesses(url, specs, roleEnv(o, emu.url));
    const checkpoint = Math.min(RSS_CHECKPOINT, Math.floor(o.objects / 2));
    let atCheckpoint: MemorySnapshot | null = null;
    let sampledPeak = 0;
    let pausedSamples = 0;
    let samples = 0;
    let lastPgSample = -Infinity;
    let lastPgMemory = -Infinity;
    const timeline: { s: number; discovered: number; finalized: number; jobs: number; jobs_table_mb: number }[] = [];
    const cpuAtStart = roleCpu(roles);
    const t0 = performance.now();
    const { fullScanId } = await fullScanStart(pool, scopeId, 'bench');
    const last = await sampleUntilFinished(url, [fullScanId], async (s: Sample) => {
      const scan = s.scans[0]!;
      samples++;
      sampledPeak = Math.max(sampledPeak, s.jobs);
      if (scan.paused) pausedSamples++;
      // Backends' CPU every 2 s; PostgreSQL's memory, which moves slowly, every 10 s.
      if (s.ms - lastPgSample >= 2000) {
        lastPgSample = s.ms;
        await pgUsage.sample(pool, s.ms - lastPgMemory >= 10_000);
        if (s.ms - lastPgMemory >= 10_000) lastPgMemory = s.ms;
      }
      if (!atCheckpoint && scan.finalized >= checkpoint) {
        await pgUsage.sample(pool, true);
        atCheckpoint = memorySnapshot(scan.finalized, roles, pgUsage);
      }
      if (timeline.length === 0 || s.ms - timeline.at(-1)!.s * 1000 >= 10_000) {
        // The job table's size on disk: rows come and go by the million, so bloat would show here first.
        const { rows: size } = await pool.query<{ mb: number }>(`select pg_total_relation_size('graphile_worker._private_jobs') / 1048576 as mb`);
        timeline.push({ s: Math.round(s.ms / 1000), discovered: scan.discovered, finalized: scan.finalized, jobs: s.jobs, jobs_table_mb: Number(size[0]!.mb) });
      }
    });
    const seconds = (performance.now() - t0) / 1000;
    await pgUsage.sample(pool, true);
    const atEnd = memorySnapshot(last.scans[0]!.finalized, roles, pgUsage);
    const perRole = roleFigures(roles, o.objects, cpuAtStart);
    const postgres = postgresCpu(pgUsage, roles, o.objects);
    const emulatorCpu = cpuSeconds(emu.proc.pid!);
    await stopRoleProcesses(roles);
    const warnings = Object.fromEntries(roles.filter((r) => r.warnings.length).map((r) => [r.spec.name, r.warnings.slice(0, 5)]));
    roles = [];

    const { rows } = await pool.query(
      `select status, discovered::int, finalized::int, clean_count::int, malicious_count::int, scan_window, page_size
         from dsx.full_scans where id = $1`,
      [fullScanId],
    );
    const scan = rows[0] as { status: string; discovered: number; finalized: number; clean_count: number; malicious_count: number; scan_window: number; page_size: number };
    const tenths = await ratesByTenth(pool, fullScanId, o.objects);
    const exact = await queuePeakRead(pool, baseline);
    await queuePeakRemove(pool);
    const profile = await sqlProfile(pool, o.objects, profiled);
    const sizes = await databaseSizes(pool, o.objects);

    const first = tenths[0]!;
    const lastTenth = tenths.at(-1)!;
    const peak = Math.max(sampledPeak, exact?.peak_rows ?? 0);
    const rssGrowth = (a: number | null | undefined, b: number | null | undefined) => (a && b ? round2(b / a - 1) : null);
    const cp = atCheckpoint as MemorySnapshot | null;
    const growth: Record<string, number | null> = {};
    for (const r of specs) growth[r.name] = rssGrowth(cp?.processes_peak_rss_mb[r.name], atEnd.processes_peak_rss_mb[r.name]);
    growth.postgres_pss = rssGrowth(cp?.postgres_peak_pss_mb, atEnd.postgres_peak_pss_mb);
    growth.postgres_private = rssGrowth(cp?.postgres_peak_private_mb, atEnd.postgres_peak_private_mb);
    const workerGrowth = specs.map((r) => growth[r.name]).filter((g): g is number => g !== null);
    return {
      objects: o.objects,
      seconds,
      objects_per_s: o.objects / seconds,
      scan: { ...scan, exact: scan.status === 'completed' && scan.finalized === o.objects && scan.clean_count + scan.malicious_count === o.objects },
      rate: { first_tenth_per_s: first, last_tenth_per_s: lastTenth, last_to_first: round2(lastTenth / first), by_tenth_per_s: tenths },
      queue: {
        window: scan.scan_window,
        peak_rows_sampled: sampledPeak,
        peak_rows_exact: exact?.peak_rows ?? null,
        statements_counted: exact?.statements ?? null,
        samples,
        sample_interval_ms: 200,
        enumeration_paused_fraction: round2(pausedSamples / Math.max(1, samples)),
        last_sample_jobs: last.jobs,
      },
      size: sizes,
      memory: { at_checkpoint: cp, at_end: atEnd, growth },
      cpu: { roles: perRole, postgres, emulator_s: emulatorCpu === null ? null : round2(emulatorCpu), bench_s: round2(process.cpuUsage().user / 1e6 + process.cpuUsage().system / 1e6) },
      sql_profile: profile,
      timeline,
      warnings,
      targets: { last_to_first: 0.9, peak_rows: `window + ${QUEUE_SLACK}`, rss_growth: 0.1 },
      holds: {
        rate: lastTenth >= 0.9 * first,
        queue_bounded: scan.scan_window !== null && peak <= scan.scan_window + QUEUE_SLACK,
        rss_flat_workers: workerGrowth.length > 0 && workerGrowth.every((g) => g <= 0.1),
        under_30_minutes: seconds < 1800,
      },
    };
  } finally {
    await stopRoleProcesses(roles);
    await pool.end();
    await emu.stop();
  }
}
