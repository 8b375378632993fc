/** Bench environment: a throwaway embedded PostgreSQL (product defaults), databases, the emulator process. */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { PROJECT_DIR } from '../src/config.ts';
import { createDatabaseIfMissing, makePool } from '../src/db/connect.ts';
import { databaseUrl, ensureEmbeddedPostgres, type EmbeddedServer } from '../src/db/embedded.ts';
import { migrate } from '../src/db/migrate.ts';
import { freePort } from '../src/testing/ports.ts';
import { parentPid } from './cpu.ts';

export interface BenchServer {
  adminUrl: string;
  version: string;
  /**
   * The postmaster's pid when the server runs on this machine (the parent of a backend), for CPU
   * profiles; null when it cannot be seen (another host, another container).
   */
  postmasterPid: number | null;
  stop(): Promise<void>;
  /** A fresh migrated database, on a quiet server (see quiesce). */
  database(name: string, poolSize?: number): Promise<{ url: string; pool: pg.Pool }>;
  /**
   * Waits until the server does no background work left over from an earlier scenario: a CHECKPOINT
   * (so dirty buffers are not flushed during the next measurement) and no autovacuum worker running
   * (a 100,000-object scan leaves large tables to vacuum; measured alongside, it cut the queue
   * ceiling in half). Gives up waiting after two minutes.
   */
  quiesce(): Promise<void>;
}

export async function startServer(): Promise<BenchServer> {
  let server: EmbeddedServer | undefined;
  let tmp: string | undefined;
  let adminUrl = process.env.BENCH_DATABASE_URL;
  if (!adminUrl) {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-bench-pg-'));
    fs.chmodSync(tmp, 0o755);
    // track_commit_timestamp: the progress-latency scenario reads when each NOTIFY's transaction committed,
    // and the scale scenario orders job-table changes by commit. pg_stat_statements is loaded but tracks
    // nothing unless a scenario turns it on for its database (trackStatements). max_connections: the
    // scale scenario's five role processes open up to ~150 connections beside the bench's own.
    server = await ensureEmbeddedPostgres({
      dataDir: tmp,
      port: await freePort(),
      settings: {
        track_functions: 'pl',
        track_commit_timestamp: 'on',
        shared_preload_libraries: 'pg_stat_statements',
        'pg_stat_statements.track': 'none',
        max_connections: '300',
      },
      onNotice: () => {},
    });
    adminUrl = server.adminUrl;
  }
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  const version = (await c.query('show server_version')).rows[0].server_version as string;
  const postmaster = parentPid((await c.query('select pg_backend_pid() as pid')).rows[0].pid as number);
  await c.end();
  async function quiesce(): Promise<void> {
    const c3 = new pg.Client({ connectionString: adminUrl });
    await c3.connect();
    try {
      await c3.query('checkpoint').catch(() => {}); // needs pg_checkpoint on a server of your own
      for (const until = Date.now() + 120_000; Date.now() < until; ) {
        const { rows } = await c3.query(`select count(*)::int as n from pg_stat_activity where backend_type = 'autovacuum worker'`);
        if (rows[0].n === 0) break;
        await new Promise((r) => setTimeout(r, 250));
      }
    } finally {
      await c3.end();
    }
  }
  return {
    adminUrl,
    version,
    postmasterPid: postmaster,
    async stop() {
      await server?.stop();
      if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    },
    async database(name, poolSize = 40) {
      const c2 = new pg.Client({ connectionString: adminUrl });
      await c2.connect();
      await c2.query(`drop database if exists ${name} with (force)`);
      await c2.end();
      await createDatabaseIfMissing(adminUrl!, name);
      const url = databaseUrl(adminUrl!, name);
      const pool = makePool(url, poolSize);
      await migrate(pool);
      await quiesce();
      return { url, pool };
    },
    quiesce,
  };
}

/** The DSXA emulator in its own process (as in production, it must not share our event loop). */
export async function startEmulatorProcess(opts: { latencyMs?: number; capacity?: number } = {}): Promise<{ url: string; proc: ChildProcess; stop(): Promise<void> }> {
  const port = await freePort();
  const proc = spawn(
    process.execPath,
    [path.join(PROJECT_DIR, 'src/cli/main.ts'), 'dsxa-emulator', '--port', String(port), '--latency-ms', String(opts.latencyMs ?? 0), '--capacity', String(opts.capacity ?? 256)],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<void>((resolve, reject) => {
    proc.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('listening')) resolve();
    });
    proc.once('exit', (c) => reject(new Error(`emulator exited with ${c}`)));
  });
  return {
    url: `http://127.0.0.1:${port}`,
    proc,
    stop: () =>
      new Promise<void>((r) => {
        proc.once('exit', () => r());
        proc.kill('SIGTERM');
      }),
  };
}

/**
 * Turns on pg_stat_statements (every statement, nested ones included) for the new sessions of one
 * database; false when the server does not have it loaded (a server of your own). It costs ~15% of
 * throughput here, so only profiling runs (`--profile`) use it.
 */
export async function trackStatements(pool: pg.Pool, database: string): Promise<boolean> {
  try {
    await pool.query('create extension if not exists pg_stat_statements');
    await pool.query(`alter database ${pg.escapeIdentifier(database)} set pg_stat_statements.track = 'all'`);
    await pool.query(`alter database ${pg.escapeIdentifier(database)} set pg_stat_statements.track_utility = off`);
    await pool.query('select pg_stat_statements_reset()');
    return true;
  } catch {
    return false;
  }
}
