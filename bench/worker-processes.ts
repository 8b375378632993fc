/**
 * The product's roles as separate `dsx-connect worker --roles ...` processes against one database, as an
 * operator would run them, and what each costs as Linux sees it (/proc): CPU seconds, resident memory
 * (peak and current), and the same for the PostgreSQL backends each process's connections use (told
 * apart by the application_name carried in each process's DATABASE_URL).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import { PROJECT_DIR } from '../src/config.ts';

/** One role process to start: a name for the report, its `--roles` and `--concurrency`. */
export interface RoleSpec {
  name: string;
  roles: string;
  concurrency: number;
}

/**
 * The five processes of a scaled-out deployment: enumeration, scanning, finalization, side effects and
 * monitoring each on their own. Scan and finalize get `concurrency` (the bench's --concurrency, default
 * DSX_WORKER_CONCURRENCY, 128); the others run a few jobs at a time (one listing per running scan;
 * remediations and notifications run in their lane of DSX_EFFECTS_CONCURRENCY whatever this says), so
 * their pools stay small (workerPoolSize in src/worker/run.ts: min(concurrency, 32) + 18 connections).
 */
export function scaledOut(concurrency: number): RoleSpec[] {
  return [
    { name: 'enumerate', roles: 'enumerate', concurrency: 8 },
    { name: 'scan', roles: 'scan', concurrency },
    { name: 'finalize', roles: 'finalize', concurrency },
    { name: 'effects', roles: 'remediate,notify', concurrency: 8 },
    { name: 'monitor', roles: 'monitor', concurrency: 8 },
  ];
}

/** A running role process. */
export interface RoleProcess {
  spec: RoleSpec;
  proc: ChildProcess;
  pid: number;
  /** Lines logged at warn or above (pino levels 40+), kept for the report. */
  warnings: string[];
}

const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100; // Linux's USER_HZ on every common architecture
  }
})();

/** The application_name a role process's connections carry (so its backends can be told apart). */
export function applicationName(spec: RoleSpec): string {
  return `dsx-bench-${spec.name}`;
}

/**
 * Starts each role as `node src/cli/main.ts worker --roles ... --concurrency ...` and resolves once every
 * one has logged "worker running". `env` adds settings (DSXA_URL, DSX_PAGE_SIZE, ...); logs are at info
 * (graphile-worker's per-job lines are debug), and only warnings and errors are kept.
 */
export async function startRoleProcesses(url: string, specs: RoleSpec[], env: NodeJS.ProcessEnv): Promise<RoleProcess[]> {
  const started = specs.map((spec) => startRole(url, spec, env));
  try {
    await Promise.all(started.map((r) => r.ready));
  } catch (err) {
    await stopRoleProcesses(started.map((r) => r.role));
    throw err;
  }
  return started.map((r) => r.role);
}

function startRole(url: string, spec: RoleSpec, env: NodeJS.ProcessEnv): { role: RoleProcess; ready: Promise<void> } {
  const u = new URL(url);
  // node-postgres lets a connection string's parameters win over the pool's own application_name.
  u.searchParams.set('application_name', applicationName(spec));
  const proc = spawn(
    process.execPath,
    [path.join(PROJECT_DIR, 'src/cli/main.ts'), 'worker', '--roles', spec.roles, '--concurrency', String(spec.concurrency)],
    { env: { ...process.env, DSX_ENV_FILE: '/dev/null', DSX_LOG_LEVEL: 'info', ...env, DATABASE_URL: u.toString() }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const role: RoleProcess = { spec, proc, pid: proc.pid!, warnings: [] };
  let buffered = '';
  const ready = new Promise<void>((resolve, reject) => {
    // The pipes are read for the whole run: a child whose pipe is full blocks on its next log line.
    proc.stdout!.on('data', (d: Buffer) => {
      buffered += d.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) {
        if (line.includes('"msg":"worker running"')) resolve();
        const level = /"level":(\d+)/.exec(line);
        if (level && Number(level[1]) >= 40 && role.warnings.length < 50) role.warnings.push(line.slice(0, 500));
      }
    });
    proc.stderr!.on('data', (d: Buffer) => {
      if (role.warnings.length < 50) role.warnings.push(d.toString().slice(0, 500));
    });
    proc.once('exit', (code, signal) => reject(new Error(`worker ${spec.name} exited (${code ?? signal}) before it ran: ${role.warnings.join(' | ')}`)));
  });
  return { role, ready };
}

/** SIGTERM to each process (jobs in progress finish, the rest go back to the queue); resolves when all exited. */
export async function stopRoleProcesses(roles: RoleProcess[]): Promise<void> {
  await Promise.all(
    roles.map(
      (r) =>
        new Promise<void>((resolve) => {
          if (r.proc.exitCode !== null || r.proc.signalCode !== null) return resolve();
          r.proc.once('exit', () => resolve());
          r.proc.kill('SIGTERM');
        }),
    ),
  );
}

/** CPU seconds a process has used so far (user + system); with `children`, also its reaped children's. */
export function cpuSeconds(pid: number, children = false): number | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid ...": comm may hold spaces, so count fields after the last ')'.
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // Fields 14-17 of proc(5) (utime, stime, cutime, cstime) are 11-14 after the state.
    const ticks = Number(f[11]) + Number(f[12]) + (children ? Number(f[13]) + Number(f[14]) : 0);
    return ticks / CLK_TCK;
  } catch {
    return null;
  }
}

/** Resident memory of a process in MB: the peak so far (VmHWM) and now (VmRSS). */
export function residentMb(pid: number): { peak: number; now: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN);
    return { peak: Math.round(kb('VmHWM') / 1024), now: Math.round(kb('VmRSS') / 1024) };
  } catch {
    return null;
  }
}

function parentOf(pid: number): number | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return null;
  }
}

/** The running children of `pid` (PostgreSQL's backends and background processes are the postmaster's). */
function childrenOf(pid: number): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number)
    .filter((p) => parentOf(p) === pid);
}

/**
 * PostgreSQL's memory and CPU as this machine sees it, sampled while a scenario runs. Memory is the sum
 * over the postmaster and its children of PSS (shared pages divided among the processes that map them,
 * so the 1 GB of shared buffers counts once, as far as it is touched) and of private memory (what each
 * process holds for itself: the part that grows with connections and work, not with the data cached).
 * CPU per backend is attributed to the application_name of its connection (one per role process).
 * Null figures when the server runs elsewhere (BENCH_DATABASE_URL on another host).
 */
export class PostgresUsage {
  readonly #postmaster: number | null;
  readonly #cpuAtStart: number;
  readonly #backendCpu = new Map<number, { app: string; start: number; last: number }>();
  peakPssMb = 0;
  peakPrivateMb = 0;

  private constructor(postmaster: number | null) {
    this.#postmaster = postmaster;
    this.#cpuAtStart = postmaster === null ? 0 : this.#totalCpu();
  }

  /** Finds the postmaster from a backend of `client`'s connection (its parent process). */
  static async attach(client: pg.ClientBase | pg.Pool): Promise<PostgresUsage> {
    const { rows } = await client.query<{ pid: number }>('select pg_backend_pid() as pid');
    const ppid = parentOf(rows[0]!.pid);
    return new PostgresUsage(ppid !== null && ppid > 1 ? ppid : null);
  }

  /** Postmaster, live children, and children already reaped (cutime/cstime). */
  #totalCpu(): number {
    if (this.#postmaster === null) return 0;
    let total = cpuSeconds(this.#postmaster, true) ?? 0;
    for (const p of childrenOf(this.#postmaster)) total += cpuSeconds(p) ?? 0;
    return total;
  }

  /**
   * Reads the CPU of every backend and, with `memory`, the memory of every PostgreSQL process. The
   * memory walk costs the kernel ~1 ms per backend that maps the 1 GB of shared buffers, so callers do
   * it less often than the CPU reading (which a backend's exit between two readings would lose).
   */
  async sample(client: pg.ClientBase | pg.Pool, memory: boolean): Promise<void> {
    if (this.#postmaster === null) return;
    if (memory) this.#sampleMemory();
    const { rows } = await client.query<{ pid: number; app: string }>(
      `select pid, coalesce(nullif(application_name, ''), backend_type) as app from pg_stat_activity where pid <> pg_backend_pid()`,
    );
    for (const r of rows) {
      const cpu = cpuSeconds(r.pid);
      if (cpu === null) continue;
      const seen = this.#backendCpu.get(r.pid);
      if (seen && seen.app === r.app) seen.last = cpu;
      // A backend first seen mid-run may have worked before: count it from zero only if it is new.
      else this.#backendCpu.set(r.pid, { app: r.app, start: seen ? cpu : 0, last: cpu });
    }
  }

  #sampleMemory(): void {
    if (this.#postmaster === null) return;
    let pss = 0;
    let priv = 0;
    for (const p of [this.#postmaster, ...childrenOf(this.#postmaster)]) {
      try {
        const s = readFileSync(`/proc/${p}/smaps_rollup`, 'utf8');
        const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? 0);
        pss += kb('Pss');
        priv += kb('Private_Clean') + kb('Private_Dirty');
      } catch {
        // exited meanwhile
      }
    }
    this.peakPssMb = Math.max(this.peakPssMb, Math.round(pss / 1024));
    this.peakPrivateMb = Math.max(this.peakPrivateMb, Math.round(priv / 1024));
  }

  /**
   * CPU seconds since attach: PostgreSQL in all, and per application_name (backends last seen at the
   * latest sample; a backend that exited between two samples loses at most one interval's work).
   */
  cpu(): { total: number; by_application: Record<string, number> } | null {
    if (this.#postmaster === null) return null;
    const by: Record<string, number> = {};
    for (const b of this.#backendCpu.values()) by[b.app] = round2((by[b.app] ?? 0) + b.last - b.start);
    return { total: round2(this.#totalCpu() - this.#cpuAtStart), by_application: by };
  }
}

/** Two decimals. */
export function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
