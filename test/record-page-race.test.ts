/**
 * A page being written while its scan is canceled: record_page takes the full-scan row lock only at
 * its end (migration 0012), so a cancel can commit in between. The page must then vanish whole.
 */
import t from 'tap';
import { fullScanStart } from '../src/db/sql/full-scans.ts';
import { createTestDatabase } from './helpers/db.ts';
import { emulator, getScan, queuedJobs, Stepper, syntheticScope } from './helpers/pipeline.ts';

t.test('a cancel that commits while a page is being written rolls the whole page back', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const scope = await syntheticScope(db.pool, { objects: 10 });
  const stepper = new Stepper(db.pool, { dsxaUrl: emu.url });
  const { fullScanId } = await fullScanStart(db.pool, scope.id, 'tester');
  await stepper.drain('full-scan-scope');
  t.equal((await getScan(db.pool, fullScanId)).status, 'running');
  // This test plays the page-0 job's worker: it calls record_page itself, then completes the job.
  const [page0] = await queuedJobs(db.pool, 'enumerate-scope-page');

  // The cancel holds the full-scan row, uncommitted, while the page is written.
  const canceler = await db.pool.connect();
  t.teardown(() => canceler.release());
  await canceler.query('begin');
  await canceler.query(`select dsx.cancel_full_scan($1, 'interrupt')`, [fullScanId]);

  const objects = [1, 2, 3].map((i) => ({ identity: `race-${i}`, size: 1, etag: null, mtime: null }));
  let settled = false;
  const page = db.pool
    .query<{ r: { status: string } }>('select dsx_private.record_page($1, 0, $2::jsonb, $3, $4, 3) as r', [
      fullScanId,
      JSON.stringify(objects),
      'cursor-1',
      (page0!.payload as { job_id: string }).job_id,
    ])
    .finally(() => (settled = true));
  await new Promise((r) => setTimeout(r, 300));
  t.notOk(settled, 'the page waits for the full-scan row at its end');
  await canceler.query('commit');

  const { rows } = await page;
  t.same(rows[0]!.r, { status: 'canceled' }, 'the page reports the scan canceled');
  await stepper.complete(page0!);
  const { rows: results } = await db.pool.query('select count(*)::int as n from dsx.scan_results where full_scan_id = $1', [fullScanId]);
  t.equal(results[0].n, 0, 'no result row of the page is left');
  t.same(await queuedJobs(db.pool, 'scan-object'), [], 'no scan job of the page is left');
  t.same(await queuedJobs(db.pool, 'enumerate-scope-page'), [], 'no next page is queued');
  const scan = await getScan(db.pool, fullScanId);
  t.match(scan, { status: 'canceled', discovered: 0, pages: 0 });
  t.ok(scan.finished_at, 'the canceled scan with nothing discovered is finished');
  const { rows: v } = await db.pool.query('select bool_and(ok) as ok from dsx.verify_full_scan($1)', [fullScanId]);
  t.equal(v[0].ok, true, 'every invariant holds');
});

t.test('the same page recorded twice at once: one records it, the other finds it recorded', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const scope = await syntheticScope(db.pool, { objects: 10 });
  const stepper = new Stepper(db.pool, { dsxaUrl: emu.url });
  const { fullScanId } = await fullScanStart(db.pool, scope.id, 'tester');
  await stepper.drain('full-scan-scope');
  const [page0] = await queuedJobs(db.pool, 'enumerate-scope-page');
  const objects = JSON.stringify([1, 2, 3].map((i) => ({ identity: `twice-${i}`, size: 1, etag: null, mtime: null })));
  const record = () =>
    db.pool.query<{ r: { status: string } }>('select dsx_private.record_page($1, 0, $2::jsonb, $3, $4, 3) as r', [
      fullScanId,
      objects,
      'cursor-1',
      (page0!.payload as { job_id: string }).job_id,
    ]);
  const statuses = (await Promise.all([record(), record(), record()])).map((x) => x.rows[0]!.r.status).sort();
  t.same(statuses, ['duplicate', 'duplicate', 'recorded']);
  t.match(await getScan(db.pool, fullScanId), { discovered: 3, pages: 1 });
  t.equal((await queuedJobs(db.pool, 'scan-object')).length, 3, 'one scan job per object');
  t.equal((await queuedJobs(db.pool, 'enumerate-scope-page')).length, 2, 'page 0 (still running here) and one page 1');
});
