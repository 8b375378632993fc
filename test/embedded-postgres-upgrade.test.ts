import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import t, { type Test } from 'tap';
import { loadConfig } from '../src/config.ts';
import { makePool, openDatabase, type Database } from '../src/db/connect.ts';
import { claimCredentials, embeddedLayout, generateCredentials } from '../src/db/embedded-credentials.ts';
import { databaseUrl } from '../src/db/embedded.ts';
import { migrate } from '../src/db/migrate.ts';
import { integrationCreate } from '../src/db/sql/catalog.ts';
import { fullScanStart } from '../src/db/sql/full-scans.ts';
import { workerPoolSize } from '../src/worker/run.ts';
import { freePort } from '../src/testing/ports.ts';
import { LEGACY_PASSWORD, LEGACY_USER, loginError, makeLegacyCluster } from './helpers/legacy-embedded.ts';
import { emulator, syntheticScope, waitForScan, workers } from './helpers/pipeline.ts';

const execFileAsync = promisify(execFile);

/** Objects in non-system schemas of the current database not owned by `owner` (the `public` schema aside). */
const NOT_OWNED = `
with ns as (select oid, nspname, nspowner from pg_namespace
             where nspname not in ('pg_catalog', 'information_schema') and nspname !~ '^pg_(toast|temp_|toast_temp_)')
select 'schema ' || nspname as object from ns where nspowner <> $1::regrole and nspname <> 'public'
union all
select 'relation ' || c.oid::regclass from pg_class c join ns on ns.oid = c.relnamespace where c.relowner <> $1::regrole
union all
select 'routine ' || p.oid::regprocedure from pg_proc p join ns on ns.oid = p.pronamespace where p.proowner <> $1::regrole
union all
select 'type ' || t.oid::regtype from pg_type t join ns on ns.oid = t.typnamespace where t.typowner <> $1::regrole`;

async function counts(pool: pg.Pool) {
  const { rows } = await pool.query(`select
    (select count(*)::int from dsx.integrations) as integrations,
    (select count(*)::int from dsx.scopes) as scopes,
    (select count(*)::int from dsx.full_scans) as full_scans,
    (select count(*)::int from graphile_worker.jobs) as jobs,
    (select count(*)::int from public.dsx_migrations) as migrations`);
  return rows[0];
}

/**
 * A cluster of an earlier version, with a catalog, credentials and a full scan queued but not run,
 * stopped; and a byte-for-byte copy of it (to upgrade a second time from a different starting state).
 */
async function legacyClusters(t: Test) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-upgrade-'));
  fs.chmodSync(root, 0o755);
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const [a, b] = [path.join(root, 'a'), path.join(root, 'b')];
  fs.mkdirSync(a, { mode: 0o755 });
  fs.mkdirSync(b, { mode: 0o755 });
  const port = await freePort();
  const legacy = await makeLegacyCluster(a, port);
  const pool = makePool(legacy.url, 2);
  let before;
  try {
    await integrationCreate(pool, { name: 'bucket', kind: 's3', settings: { bucket: 'bkt' }, credentials: { accessKeyId: 'AKIA', secretAccessKey: 'shh' } });
    const scope = await syntheticScope(pool, { objects: 30 });
    const { fullScanId } = await fullScanStart(pool, scope.id, 'before-upgrade');
    const { rows } = await pool.query(`select current_setting('unix_socket_directories') as sockets, current_setting('hba_file') as hba`);
    before = { fullScanId, ...(await counts(pool)), sockets: rows[0].sockets as string, hba: fs.readFileSync(rows[0].hba, 'utf8') };
  } finally {
    await pool.end();
    await legacy.stop();
  }
  // `cp -a` keeps the files' owner (the postgres account when we are root) and modes.
  await execFileAsync('cp', ['-a', path.join(a, 'pg'), path.join(b, 'pg')]);
  return { a, b, port, before };
}

t.test('a cluster made by an earlier version is upgraded in place at its first start, and keeps working', async (t) => {
  const { a, b, port, before } = await legacyClusters(t);
  t.match(before, { integrations: 2, scopes: 1, full_scans: 1 }, 'the legacy cluster has a catalog and a queued scan');
  t.ok(before.jobs > 0, 'and jobs waiting');
  t.match(before.hba, /^host\s+all\s+all\s+127\.0\.0\.1\/32\s+password$/m, 'it used cleartext password authentication');
  t.not(before.sockets, embeddedLayout(a).socketDir, 'and a socket outside DSX_DATA_DIR');

  const env = (dir: string) => ({ DSX_DATA_DIR: dir, DSX_EMBEDDED_PG_PORT: String(port) });
  let db: Database | undefined;
  t.teardown(() => db?.close());

  t.test('the first start rotates the password, creates the owner role, hands everything over and says so in one line', async (t) => {
    const notices: string[] = [];
    // The workers below need a pool the size the product gives them (each lane's runner holds one to LISTEN).
    db = await openDatabase(loadConfig(env(a)), { poolSize: workerPoolSize(4), onNotice: (m) => notices.push(m) });
    t.equal(notices.length, 1, 'one line');
    t.match(
      notices[0],
      new RegExp(
        '^upgraded the embedded PostgreSQL in .*/a/pg, made by an earlier version: replaced the published superuser password with a random one; ' +
          'created the owner role dsx_owner \\(login, not a superuser\\); granted dsx_viewer, dsx_operator to it with admin option; ' +
          'handed database dsx and \\d+ objects in it \\(schemas, tables, sequences, functions, types, views\\) to dsx_owner; ' +
          'SCRAM-SHA-256 passwords for TCP and the Unix socket \\(pg_hba\\.conf\\); passwords in .*/a/pg-credentials\\.json \\(mode 0600\\)$',
      ),
    );
    const layout = embeddedLayout(a);
    t.equal(fs.statSync(layout.credentialsFile).mode & 0o777, 0o600);
    t.equal(fs.statSync(layout.socketDir).mode & 0o777, 0o700);
    t.ok(fs.statSync(path.join(layout.socketDir, `.s.PGSQL.${port}`)).isSocket(), 'the socket moved into DSX_DATA_DIR');
    t.notOk(fs.existsSync(path.join(before.sockets, `.s.PGSQL.${port}`)), 'and is gone from its old place');
    t.equal(await loginError(`postgres://${LEGACY_USER}:${LEGACY_PASSWORD}@127.0.0.1:${port}/postgres`), '28P01', 'the published password no longer logs in');

    const [me] = (await db.pool.query('select current_user as u, rolsuper from pg_roles where rolname = current_user')).rows;
    t.same(me, { u: 'dsx_owner', rolsuper: false }, 'the product connects as the owner role');
    const admin = databaseUrl(db.embedded!.adminUrl, 'dsx');
    const c = new pg.Client({ connectionString: admin });
    await c.connect();
    try {
      t.same((await c.query(NOT_OWNED, ['dsx_owner'])).rows, [], 'every schema, table, sequence, function, type and view in dsx belongs to it');
      const rules = (await c.query('select distinct auth_method from pg_hba_file_rules')).rows;
      t.same(rules, [{ auth_method: 'scram-sha-256' }], 'SCRAM only');
      const { rows } = await c.query(`select pg_get_userbyid(datdba) as owner from pg_database where datname = 'dsx'`);
      t.equal(rows[0].owner, 'dsx_owner', 'the database too');
    } finally {
      await c.end();
    }
  });

  t.test('everything made before the upgrade is there and the product runs on it without a superuser', async (t) => {
    const pool = db!.pool;
    t.match(await counts(pool), { integrations: before.integrations, scopes: before.scopes, full_scans: before.full_scans, jobs: before.jobs, migrations: before.migrations });
    t.same(await migrate(pool), [], 'the migrations are all applied');
    const viewer = await pool.connect();
    try {
      await viewer.query('begin');
      await viewer.query('set local role dsx_viewer');
      t.equal((await viewer.query('select count(*)::int as n from dsx.integrations')).rows[0].n, before.integrations, 'the API roles keep their grants');
      await t.rejects(viewer.query('select * from dsx_private.integration_credentials'), { code: '42501' }, 'and their limits');
      await viewer.query('rollback');
    } finally {
      viewer.release();
    }
    const emu = await emulator(t);
    await workers(t, pool, { dsxaUrl: emu.url, concurrency: 4 });
    const scan = await waitForScan(pool, before.fullScanId);
    t.match(scan, { status: 'completed', discovered: 30, finalized: 30 }, 'the scan queued before the upgrade completes after it');
    await integrationCreate(pool, { name: 'after', kind: 'filesystem', settings: { root: a } });
  });

  t.test('starting the upgraded cluster again changes nothing and says nothing', async (t) => {
    const creds = fs.readFileSync(embeddedLayout(a).credentialsFile, 'utf8');
    await db!.close();
    const notices: string[] = [];
    db = await openDatabase(loadConfig(env(a)), { poolSize: 2, onNotice: (m) => notices.push(m) });
    t.same(notices, []);
    t.equal(fs.readFileSync(embeddedLayout(a).credentialsFile, 'utf8'), creds, 'the passwords stay');
    t.equal((await counts(db.pool)).integrations, before.integrations + 1);
    await db.close();
    db = undefined;
  });

  t.test('an upgrade interrupted after writing the credentials file completes at the next start, with those passwords', async (t) => {
    // The upgrade writes the file before it changes anything: a crash right after leaves this state.
    const layout = embeddedLayout(b);
    const written = claimCredentials(layout.credentialsFile, generateCredentials(), () => {});
    const notices: string[] = [];
    db = await openDatabase(loadConfig(env(b)), { poolSize: 2, onNotice: (m) => notices.push(m) });
    t.equal(notices.length, 1);
    t.match(notices[0], /^upgraded the embedded PostgreSQL in .*\/b\/pg, made by an earlier version: replaced the published superuser password/);
    t.equal(db.url, `postgres://dsx_owner:${written.owner.password}@127.0.0.1:${port}/dsx`, 'the passwords of the file are the ones set');
    t.match(await counts(db.pool), { integrations: before.integrations, full_scans: before.full_scans });
    t.equal(await loginError(`postgres://${LEGACY_USER}:${LEGACY_PASSWORD}@127.0.0.1:${port}/postgres`), '28P01');
  });
});
