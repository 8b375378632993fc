import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { PROJECT_DIR } from '../src/config.ts';
import { makePool } from '../src/db/connect.ts';
import { ensureEmbeddedPostgres } from '../src/db/embedded.ts';
import { migrate } from '../src/db/migrate.ts';
import { fullScanStart, fullScanVerify } from '../src/db/sql/full-scans.ts';
import { freePort } from '../src/testing/ports.ts';
import { emulator, getScan, syntheticScope, waitFor } from './helpers/pipeline.ts';

t.test('workers survive a PostgreSQL restart mid-scan, and the scan completes', async (t) => {
  // A server of its own: the shared test server cannot be restarted under the other test files.
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-restart-pg-'));
  fs.chmodSync(dataDir, 0o755);
  const port = await freePort();
  const start = () => ensureEmbeddedPostgres({ dataDir, port, settings: { fsync: 'off' }, onNotice: () => {} });
  let server = await start();
  t.teardown(async () => {
    await server.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });
  // The product's own connection: the owner role (not a superuser) on the `dsx` database.
  const url = server.url;
  const pool = makePool(url, 5);
  t.teardown(() => pool.end());
  await migrate(pool);

  const emu = await emulator(t, { latencyMs: 20, capacity: 8 });
  const scope = await syntheticScope(pool, { objects: 2000 });
  const worker = spawn(process.execPath, [path.join(PROJECT_DIR, 'bin', 'dsx-connect.js'), 'worker', '--concurrency', '32'], {
    env: { ...process.env, DATABASE_URL: url, DSXA_URL: emu.url, DSX_LOG_LEVEL: 'silent', DSX_PAGE_SIZE: '200', DSX_WORKER_HEARTBEAT_MS: '200' },
    stdio: 'ignore',
  });
  const exited = new Promise<number | null>((r) => worker.once('exit', r));
  t.teardown(() => {
    worker.kill('SIGKILL');
  });
  const { fullScanId } = await fullScanStart(pool, scope.id, 'tester');
  await waitFor(async () => (await getScan(pool, fullScanId)).finalized >= 200, 'the scan to be under way');

  await server.stop();
  await new Promise((r) => setTimeout(r, 1500));
  server = await start();

  await waitFor(async () => !!(await getScan(pool, fullScanId).catch(() => null))?.finished_at, 'the scan to finish after the restart', 120_000);
  t.equal(worker.exitCode, null, 'the worker process is still running');
  const scan = await getScan(pool, fullScanId);
  t.match(scan, { status: 'completed', discovered: 2000, finalized: 2000, clean_count: 1998, malicious_count: 2 });
  await waitFor(async () => (await fullScanVerify(pool, fullScanId)).every((c) => c.ok), 'the invariant checker to pass', 60_000);
  worker.kill('SIGTERM');
  t.equal(await exited, 0, 'and stops cleanly');
});
