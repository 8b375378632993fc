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
import { emulator, getScan, syntheticScope, waitFor, waitForFinalized } from './helpers/pipeline.ts';
import { start } from './helpers/processes.ts';
import { notifications } from './helpers/wait.ts';

t.test('workers survive a PostgreSQL restart mid-scan, and the scan completes', async (t) => {
  // A server of its own: the shared test server cannot be restarted under the other test files.
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-restart-pg-'));
  fs.chmodSync(dataDir, 0o755);
  const port = await freePort();
  const startServer = () => ensureEmbeddedPostgres({ dataDir, port, settings: { fsync: 'off' }, onNotice: () => {} });
  let server = await startServer();
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
  // Error-level logs on stdout: the worker's report of the lost database is what the restart waits for.
  const worker = start(t, process.execPath, [path.join(PROJECT_DIR, 'bin', 'dsx-connect.js'), 'worker', '--concurrency', '32'], {
    env: { ...process.env, DATABASE_URL: url, DSXA_URL: emu.url, DSX_LOG_LEVEL: 'error', DSX_PAGE_SIZE: '200', DSX_WORKER_HEARTBEAT_MS: '200' },
  });
  const { fullScanId } = await fullScanStart(pool, scope.id, 'tester');
  await waitForFinalized(pool, fullScanId, 200);

  await server.stop();
  await worker.waitForStdout(/worker pool stopped \(database unreachable\?\)/, 30_000);
  server = await startServer();

  // Pool connections of before the restart fail once each: a failed read is retried on the next NOTIFY.
  await waitFor(async () => !!(await getScan(pool, fullScanId).catch(() => null))?.finished_at, 'the scan to finish after the restart', 120_000, notifications(pool, 'dsx_full_scan'));
  t.equal(worker.proc.exitCode, null, 'the worker process is still running');
  const scan = await getScan(pool, fullScanId);
  t.match(scan, { status: 'completed', discovered: 2000, finalized: 2000, clean_count: 1998, malicious_count: 2 });
  // The last jobs' rows are deleted by the worker process's completion batches, which nothing
  // announces to this process: the checker ("no scan job left queued or locked") is polled.
  await waitFor(async () => (await fullScanVerify(pool, fullScanId)).every((c) => c.ok), 'the invariant checker to pass', 60_000);
  worker.proc.kill('SIGTERM');
  t.match(await worker.exited(), { code: 0 }, 'and stops cleanly');
});
