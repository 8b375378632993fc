/**
 * `npm test` runs this: one embedded PostgreSQL for the whole run (or the server of TEST_DATABASE_URL,
 * e.g. to prove PostgreSQL 15), a template database migrated once, then tap. Each test file clones the
 * template into its own database (test/helpers/db.ts), so files run in parallel in isolation.
 *
 * The template is owned and migrated by the owner role, and the tests connect as it, as the product
 * does: the suite proves the product needs no superuser. On the embedded server that is `dsx_owner`;
 * on TEST_DATABASE_URL's server (whose role must be a superuser) the role `dsx_test_owner` is created
 * with a password derived from that URL (so concurrent runs agree on it). If that cannot be done there,
 * a line says why and the tests connect as TEST_DATABASE_URL's own role.
 */
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { PROJECT_DIR } from '../src/config.ts';
import { createDatabaseIfMissing, makePool } from '../src/db/connect.ts';
import { ensureOwnerRole, noChanges } from '../src/db/embedded-bootstrap.ts';
import { databaseUrl, ensureEmbeddedPostgres } from '../src/db/embedded.ts';
import { migrate } from '../src/db/migrate.ts';
import { freePort } from '../src/testing/ports.ts';

const TEMPLATE = 'dsx_template';
const EXTERNAL_OWNER = 'dsx_test_owner';

/** The owner role's URL on an external server, or `adminUrl` itself when no owner role can be made. */
async function externalOwnerUrl(adminUrl: string): Promise<string> {
  const owner = { name: EXTERNAL_OWNER, password: crypto.createHash('sha256').update(`dsx-test-owner\0${adminUrl}`).digest('base64url') };
  const url = new URL(adminUrl);
  url.username = owner.name;
  url.password = owner.password;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await ensureOwnerRole(admin, owner, noChanges());
    const probe = new pg.Client({ connectionString: url.toString() });
    await probe.connect();
    await probe.end();
    return url.toString();
  } catch (err) {
    process.stderr.write(`test/run.ts: cannot use role ${EXTERNAL_OWNER} on TEST_DATABASE_URL's server (${(err as Error).message}); the tests connect as ${decodeURIComponent(new URL(adminUrl).username)}\n`);
    return adminUrl;
  } finally {
    await admin.end();
  }
}

let adminUrl = process.env.TEST_DATABASE_URL;
let ownerUrl: string;
let stop = async () => {};
let tmp: string | undefined;
if (!adminUrl) {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-test-pg-'));
  // The server runs as the `postgres` OS account when we are root: it must reach pg/ and pg-socket/.
  fs.chmodSync(tmp, 0o755);
  const server = await ensureEmbeddedPostgres({
    dataDir: tmp,
    port: await freePort(),
    settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', max_connections: '300' },
    onNotice: () => {},
  });
  adminUrl = server.adminUrl;
  ownerUrl = server.url;
  stop = () => server.stop();
} else {
  ownerUrl = await externalOwnerUrl(adminUrl);
}

// The test configuration's DSX_DATA_DIR (test/helpers/pipeline.ts): quarantined test files land here,
// not in the project's .dsx-data.
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-test-data-'));

let code = 1;
try {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`drop database if exists ${TEMPLATE} with (force)`);
  await admin.end();
  await createDatabaseIfMissing(adminUrl, TEMPLATE, { owner: decodeURIComponent(new URL(ownerUrl).username) });
  const pool = makePool(databaseUrl(ownerUrl, TEMPLATE), 2);
  await migrate(pool);
  await pool.end();
  const tap = path.join(PROJECT_DIR, 'node_modules', '.bin', 'tap');
  // The leak check is loaded into every test file's process before the file (test/helpers/leak-check.ts).
  const leakCheck = `--node-arg=--import=${pathToFileURL(path.join(PROJECT_DIR, 'test', 'helpers', 'leak-check.ts')).href}`;
  // Asynchronous on purpose: this process reads the embedded server's log pipe; blocking here (spawnSync)
  // would let that pipe fill up and stall every PostgreSQL backend that logs.
  const child = spawn(tap, [leakCheck, ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: {
      ...process.env,
      PATH: `${path.join(PROJECT_DIR, 'node_modules', '.bin')}${path.delimiter}${process.env.PATH ?? ''}`,
      DSX_TEST_ADMIN_URL: adminUrl,
      DSX_TEST_OWNER_URL: ownerUrl,
      DSX_TEST_TEMPLATE: TEMPLATE,
      DSX_TEST_DATA_DIR: dataDir,
      DSX_LOG_LEVEL: process.env.DSX_LOG_LEVEL ?? 'silent',
    },
  });
  code = await new Promise<number>((resolve) => child.once('exit', (c) => resolve(c ?? 1)));
} finally {
  await stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  fs.rmSync(dataDir, { recursive: true, force: true });
}
process.exit(code);
