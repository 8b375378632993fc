/**
 * Opens the product's database: DATABASE_URL when set (PostgreSQL 14+), else the embedded server's `dsx`
 * database, connected as its owner role (not a superuser). Migrations are applied on open unless asked not to.
 */
import pg from 'pg';
import type { Config } from '../config.ts';
import { ensureEmbeddedPostgres, type EmbeddedServer } from './embedded.ts';
import { migrate } from './migrate.ts';

/** An open database: its URL, a shared pool, and how to close both. */
export interface Database {
  url: string;
  pool: pg.Pool;
  embedded: EmbeddedServer | undefined;
  close(): Promise<void>;
}

const MIN_SERVER_VERSION = 140000;

/**
 * Creates `name` on the server of `adminUrl` when it does not exist yet (safe under concurrency), owned
 * by `opts.owner` when given (then `adminUrl`'s role must be a superuser or a member of that role).
 */
export async function createDatabaseIfMissing(adminUrl: string, name: string, opts: { owner?: string } = {}): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const { rowCount } = await client.query('select 1 from pg_database where datname = $1', [name]);
    if (!rowCount) {
      const owner = opts.owner ? ` owner ${client.escapeIdentifier(opts.owner)}` : '';
      await client.query(`create database ${client.escapeIdentifier(name)}${owner}`).catch((err: { code?: string }) => {
        if (err.code !== '42P04' && err.code !== '23505') throw err; // created meanwhile by another process
      });
    }
  } finally {
    await client.end();
  }
}

/** A pool whose idle-client errors (server restarts) are logged by the caller instead of crashing. */
export function makePool(url: string, max: number, actor?: string): pg.Pool {
  // The actor rides in the startup packet ("-c dsx.actor=..."), so every connection of the pool names it
  // to dsx_private.actor() with no extra round trip; the server's option parser takes backslash escapes.
  const options = actor ? `-c dsx.actor=${actor.replace(/[\\\s]/g, (c) => `\\${c}`)}` : undefined;
  const pool = new pg.Pool({ connectionString: url, max, application_name: 'dsx-connect', ...(options ? { options } : {}) });
  // Idle clients and checked-out clients both report connection loss as events; without listeners a
  // server restart would crash the process instead of failing the queries in flight.
  pool.on('error', () => {});
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
}

/** Opens DATABASE_URL or the embedded server (see the module comment), checks the version, migrates. */
export async function openDatabase(
  config: Config,
  opts: {
    migrate?: boolean;
    poolSize?: number;
    onLog?: (m: string) => void;
    onNotice?: (m: string) => void;
    /** Who the audit trail names for changes made through this pool (dsx_private.actor()). */
    actor?: string;
  } = {},
): Promise<Database> {
  let url = config.databaseUrl;
  let embedded: EmbeddedServer | undefined;
  if (!url) {
    embedded = await ensureEmbeddedPostgres({ dataDir: config.dataDir, port: config.embeddedPgPort, onLog: opts.onLog, onNotice: opts.onNotice });
    url = embedded.url;
  }
  const pool = makePool(url, opts.poolSize ?? 10, opts.actor);
  try {
    const { rows } = await pool.query<{ v: string }>("select current_setting('server_version_num') as v");
    if (Number(rows[0]?.v) < MIN_SERVER_VERSION) {
      throw new Error(`PostgreSQL 14 or newer is required (server reports ${rows[0]?.v})`);
    }
    if (opts.migrate !== false) await migrate(pool);
  } catch (err) {
    await pool.end();
    await embedded?.stop();
    throw err;
  }
  return {
    url,
    pool,
    embedded,
    async close() {
      await pool.end();
      await embedded?.stop();
    },
  };
}
