/**
 * A page being written while its scan is canceled: record_page takes the full-scan row lock only at
 * its end (migration 0012), so a cancel can commit in between. The page must then vanish whole.
 */
import t, { type Test } from 'tap';
import { fullScanRecordPage, fullScanStart } from '../src/db/sql/full-scans.ts';
import { createTestDatabase } from './helpers/db.ts';
import { emulator, getScan, queuedJobs, Stepper, syntheticScope } from './helpers/pipeline.ts';
import { waitUntilBlocked } from './helpers/wait.ts';

/**
 * A running scan whose page-0 job is queued. The test plays that job's worker: `recordPage0` records
 * page 0 as the job would (with a cursor, so a next page follows), and the test completes the job.
 */
async function runningScan(t: Test) {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const scope = await syntheticScope(db.pool, { objects: 10 });
  const stepper = new Stepper(db.pool, { dsxaUrl: emu.url });
  const { fullScanId } = await fullScanStart(db.pool, scope.id, 'tester');
  await stepper.drain('full-scan-scope');
  const [page0] = await queuedJobs(db.pool, 'enumerate-scope-page');
  const recordPage0 = (prefix: string) =>
    fullScanRecordPage(db.pool, {
      id: fullScanId,
      pageNo: 0,
      objects: [1, 2, 3].map((i) => ({ identity: `${prefix}-${i}`, size: 1, etag: null, mtime: null })),
      nextCursor: 'cursor-1',
      parentJobId: (page0!.payload as { job_id: string }).job_id,
      scanMaxAttempts: 3,
    });
  return { db, stepper, fullScanId, page0: page0!, recordPage0 };
}

t.test('a cancel that commits while a page is being written rolls the whole page back', async (t) => {
  const { db, stepper, fullScanId, page0, recordPage0 } = await runningScan(t);
  t.equal((await getScan(db.pool, fullScanId)).status, 'running');

  // The cancel holds the full-scan row, uncommitted, while the page is written.
  const canceler = await db.pool.connect();
  t.teardown(() => canceler.release());
  await canceler.query('begin');
  await canceler.query(`select dsx.cancel_full_scan($1, 'interrupt')`, [fullScanId]);
  const { rows: me } = await canceler.query<{ pid: number }>('select pg_backend_pid() as pid');

  let settled = false;
  const page = recordPage0('race').finally(() => (settled = true));
  await waitUntilBlocked(db.pool, { blocker: me[0]!.pid }, 'the page to wait for the cancel');
  t.notOk(settled, 'the page waits for the full-scan row at its end');
  await canceler.query('commit');

  t.same(await page, { status: 'canceled' }, 'the page reports the scan canceled');
  await stepper.complete(page0);
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
  const { db, fullScanId, recordPage0 } = await runningScan(t);
  const statuses = (await Promise.all([recordPage0('twice'), recordPage0('twice'), recordPage0('twice')])).map((r) => r.status).sort();
  t.same(statuses, ['duplicate', 'duplicate', 'recorded']);
  t.match(await getScan(db.pool, fullScanId), { discovered: 3, pages: 1 });
  t.equal((await queuedJobs(db.pool, 'scan-object')).length, 3, 'one scan job per object');
  t.equal((await queuedJobs(db.pool, 'enumerate-scope-page')).length, 2, 'page 0 (still running here) and one page 1');
});
