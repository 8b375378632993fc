/**
 * `npm test` runs this: one embedded PostgreSQL for the whole run (or the server of TEST_DATABASE_URL,
 * e.g. to prove PostgreSQL 15), a template database migrated once, then tap. Each test file clones the
 * template into its own database (test/helpers/db.ts), so files run in parallel in isolation.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { PROJECT_DIR } from '../src/config.ts';
import { createDatabaseIfMissing, makePool } from '../src/db/connect.ts';
import { databaseUrl, ensureEmbeddedPostgres } from '../src/db/embedded.ts';
import { migrate } from '../src/db/migrate.ts';
import { freePort } from '../src/testing/ports.ts';

const TEMPLATE = 'dsx_template';


let adminUrl = process.env.TEST_DATABASE_URL;
let stop = async () => {};
let tmp: string | undefined;
if (!adminUrl) {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-test-pg-'));
  fs.chmodSync(tmp, 0o755);
  const server = await ensureEmbeddedPostgres({
    dataDir: tmp,
    port: await freePort(),
    settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', max_connections: '300' },
  });
  adminUrl = server.adminUrl;
  stop = () => server.stop();
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
  await createDatabaseIfMissing(adminUrl, TEMPLATE);
  const pool = makePool(databaseUrl(adminUrl, TEMPLATE), 2);
  await migrate(pool);
  await pool.end();
  const tap = path.join(PROJECT_DIR, 'node_modules', '.bin', 'tap');
  // Asynchronous on purpose: this process reads the embedded server's log pipe; blocking here (spawnSync)
  // would let that pipe fill up and stall every PostgreSQL backend that logs.
  const child = spawn(tap, process.argv.slice(2), {
    stdio: 'inherit',
    env: {
      ...process.env,
      PATH: `${path.join(PROJECT_DIR, 'node_modules', '.bin')}${path.delimiter}${process.env.PATH ?? ''}`,
      DSX_TEST_ADMIN_URL: adminUrl, DSX_TEST_TEMPLATE: TEMPLATE, DSX_TEST_DATA_DIR: dataDir, DSX_LOG_LEVEL: process.env.DSX_LOG_LEVEL ?? 'silent' },
  });
  code = await new Promise<number>((resolve) => child.once('exit', (c) => resolve(c ?? 1)));
} finally {
  await stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  fs.rmSync(dataDir, { recursive: true, force: true });
}
process.exit(code);
