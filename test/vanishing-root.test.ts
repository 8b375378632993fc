/**
 * A scope root (or the whole integration root) that disappears while a full scan runs. The SPEC's live
 * dataset rule applies: objects already enumerated finalize as fetch_failed (not_found), an enumeration
 * that cannot go on ends the scan `failed` with the reason, and nothing hangs or is left queued.
 */
import fs from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { fullScanStart, fullScanVerify } from '../src/db/sql/full-scans.ts';
import { createTestDatabase } from './helpers/db.ts';
import type { WorkerHandle } from '../src/worker/run.ts';
import { emulator, fsScope, getScan, queuedJobs, scanEvents, Stepper, testConfig, waitFor, waitForEmptyQueue, waitForScan, workers } from './helpers/pipeline.ts';
import { jobEvents } from './helpers/wait.ts';

function files(dir: string, n: number): void {
  fs.mkdirSync(dir, { recursive: true });
  for (let i = 0; i < n; i++) fs.writeFileSync(path.join(dir, `file-${String(i).padStart(3, '0')}.txt`), `file ${i}\n`);
}

/** Every invariant of the scan holds; with real workers, once their last jobs have left the queue. */
async function verified(t: Test, pool: import('pg').Pool, id: number, worker?: WorkerHandle): Promise<void> {
  if (worker) await waitForEmptyQueue(pool, worker);
  for (const c of await fullScanVerify(pool, id)) t.ok(c.ok, `${c.check_name}: ${c.detail}`);
}

t.test('scope root renamed between two enumeration pages: the scan fails with the reason, enumerated objects end not_found', async (t) => {
  const db = await createTestDatabase(t);
  const dir = t.testdir();
  files(path.join(dir, 'data'), 25);
  const emu = await emulator(t);
  const scope = await fsScope(db.pool, { dir, root: 'data' });
  const stepper = new Stepper(db.pool, { dsxaUrl: emu.url, config: testConfig({ pageSize: 10 }) });
  const { fullScanId } = await fullScanStart(db.pool, scope.id, 'tester');
  await stepper.drain('full-scan-scope');
  const [page0] = await queuedJobs(db.pool, 'enumerate-scope-page');
  await stepper.run(page0!);
  await stepper.complete(page0!);
  t.equal((await getScan(db.pool, fullScanId)).discovered, 10);

  fs.renameSync(path.join(dir, 'data'), path.join(dir, 'data-moved'));
  await stepper.runAll();
  const scan = await getScan(db.pool, fullScanId);
  t.match(scan, { status: 'failed', discovered: 10, finalized: 10, fetch_failed_count: 10 });
  t.match(scan.error, /enumeration of page 1 failed: scope root "data" .* does not exist/);
  t.ok(scan.finished_at);
  const { rows } = await db.pool.query(`select distinct outcome, reason from dsx.scan_results where full_scan_id = $1`, [fullScanId]);
  t.same(rows, [{ outcome: 'fetch_failed', reason: 'not_found' }]);
  t.same(fs.readdirSync(path.join(dir, 'data-moved')).length, 25, 'the files were not touched');
  await verified(t, db.pool, fullScanId);
});

t.test('integration root gone: reads are retried as transient, then finalize as fetch_failed; nothing is stranded', async (t) => {
  const db = await createTestDatabase(t);
  const dir = t.testdir();
  files(path.join(dir, 'data'), 3);
  const emu = await emulator(t);
  const scope = await fsScope(db.pool, { dir, root: 'data' });
  const stepper = new Stepper(db.pool, { dsxaUrl: emu.url });
  const { fullScanId } = await fullScanStart(db.pool, scope.id, 'tester');
  await stepper.drain('full-scan-scope');
  await stepper.drain('enumerate-scope-page');
  fs.renameSync(dir, `${dir}-unmounted`);
  t.teardown(() => fs.rmSync(`${dir}-unmounted`, { recursive: true, force: true }));

  const scans = await queuedJobs(db.pool, 'scan-object');
  t.equal(scans.length, 3);
  // An unmounted share may come back: not the last attempt -> the job fails and is retried later.
  await t.rejects(stepper.run(scans[0]!, { attempts: 1, maxAttempts: 3 }), /integration root .* is not accessible/);
  t.equal((await getScan(db.pool, fullScanId)).finalized, 0, 'a retried job changes nothing');
  for (const job of scans) {
    await stepper.run(job, { attempts: 3, maxAttempts: 3 });
    await stepper.complete(job);
  }
  await stepper.runAll();
  const scan = await getScan(db.pool, fullScanId);
  t.match(scan, { status: 'completed', discovered: 3, finalized: 3, fetch_failed_count: 3 });
  const { rows } = await db.pool.query(`select distinct outcome, reason, raw_reason from dsx.scan_results where full_scan_id = $1`, [fullScanId]);
  t.match(rows, [{ outcome: 'fetch_failed', reason: 'transient_exhausted', raw_reason: /integration root .* is not accessible/ }]);
  await verified(t, db.pool, fullScanId);
});

t.test('scope root deleted while real workers scan it: the scan ends, every object is finalized once, and verifies', async (t) => {
  const db = await createTestDatabase(t);
  const dir = t.testdir();
  files(path.join(dir, 'data', 'a'), 150);
  files(path.join(dir, 'data', 'b'), 150);
  const emu = await emulator(t, { latencyMs: 50, capacity: 2 });
  const scope = await fsScope(db.pool, { dir, root: 'data' });
  const w = await workers(t, db.pool, { dsxaUrl: emu.url, config: testConfig({ pageSize: 25 }), concurrency: 8 });
  const { fullScanId } = await fullScanStart(db.pool, scope.id, 'tester');
  await waitFor(async () => (await getScan(db.pool, fullScanId)).discovered > 0, 'the first page to be recorded', 30_000, scanEvents(db.pool, fullScanId));
  fs.rmSync(path.join(dir, 'data'), { recursive: true });

  await waitForScan(db.pool, fullScanId, 60_000);
  // A failed scan gets finished_at when enumeration fails; objects already queued are finalized after
  // that (dsx_private.fail_full_scan), so wait for them before reading the counts.
  await waitFor(async () => {
    const s = await getScan(db.pool, fullScanId);
    return s.finalized === s.discovered;
  }, 'every enumerated object to be finalized', 30_000, [scanEvents(db.pool, fullScanId), jobEvents(w)]);
  const scan = await getScan(db.pool, fullScanId);
  t.comment(`ended ${scan.status}: discovered ${scan.discovered}, clean ${scan.clean_count}, fetch_failed ${scan.fetch_failed_count}`);
  t.ok(scan.status === 'completed' || scan.status === 'failed', `the scan ended (${scan.status})`);
  if (scan.status === 'failed') t.match(scan.error, /scope root "data" .* does not exist/, 'with the reason');
  t.equal(scan.finalized, scan.discovered, 'every enumerated object is finalized');
  t.ok(scan.fetch_failed_count > 0, 'objects enumerated before the deletion could not be fetched');
  t.equal(scan.clean_count + scan.fetch_failed_count, scan.discovered, 'nothing else happened to them');
  const { rows } = await db.pool.query(
    `select reason, count(*)::int as n from dsx.scan_results where full_scan_id = $1 and outcome = 'fetch_failed' group by 1`,
    [fullScanId],
  );
  t.same(rows, [{ reason: 'not_found', n: scan.fetch_failed_count }], 'and they are not_found');
  await verified(t, db.pool, fullScanId, w);
});
