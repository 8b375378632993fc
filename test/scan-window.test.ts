/**
 * Admission control: a full scan has at most DSX_SCAN_WINDOW objects enumerated but not yet finalized.
 * Enumeration pauses when the next page would not fit and resumes when finalization makes room, so the
 * queue holds the windows of the running scans, not their scopes. Every counter update is checked by a
 * trigger (not sampled), and the queue's size by a statement trigger on graphile-worker's job table.
 */
import t from 'tap';
import type pg from 'pg';
import { loadConfig } from '../src/config.ts';
import { fullScanCancel, fullScanProgressGet, fullScanStart, fullScanVerify } from '../src/db/sql/full-scans.ts';
import { FIRST_PAGE_SIZE } from '../src/pipeline/full-scan.ts';
import { createTestDatabase } from './helpers/db.ts';
import { emulator, getScan, queuedJobs, Stepper, syntheticScope, testConfig, waitForScan, workers } from './helpers/pipeline.ts';

/** Records, at every change of a scan's counters, how many of its objects were outstanding, and the job table's size. */
async function watchBounds(pool: pg.Pool): Promise<void> {
  await pool.query(`
    create table public.window_watch (full_scan_id bigint, outstanding bigint, paused boolean, at timestamptz default clock_timestamp());
    create table public.queue_watch (rows bigint);
    create function public.tg_window_watch() returns trigger language plpgsql as $$
    begin
      insert into public.window_watch (full_scan_id, outstanding, paused)
      values (new.id, new.discovered - new.finalized, new.enumeration_paused_at is not null);
      return new;
    end $$;
    create trigger window_watch after update on dsx.full_scans for each row execute function public.tg_window_watch();
    create function public.tg_queue_watch() returns trigger language plpgsql as $$
    begin
      insert into public.queue_watch (rows) select count(*) from graphile_worker._private_jobs;
      return null;
    end $$;
    create trigger queue_watch after insert on graphile_worker._private_jobs for each statement execute function public.tg_queue_watch();
  `);
}

async function maxOutstanding(pool: pg.Pool, id: number): Promise<{ max: number; pauses: number }> {
  const { rows } = await pool.query(
    `select coalesce(max(outstanding), 0)::int as max,
            count(*) filter (where paused and not coalesce(prev, false))::int as pauses
       from (select outstanding, paused, lag(paused) over (order by at) as prev from public.window_watch where full_scan_id = $1) w`,
    [id],
  );
  return rows[0] as { max: number; pauses: number };
}

t.test('a scope ten times the window is scanned with never more than the window outstanding, and the queue stays as small', async (t) => {
  const db = await createTestDatabase(t);
  await watchBounds(db.pool);
  const emu = await emulator(t);
  const scope = await syntheticScope(db.pool, { objects: 3000 });
  const config = testConfig({ pageSize: 100, scanWindow: 300 });
  await workers(t, db.pool, { dsxaUrl: emu.url, config, concurrency: 16 });

  const { fullScanId } = await fullScanStart(db.pool, scope.id, 'tester');
  const scan = await waitForScan(db.pool, fullScanId, 120_000);
  t.equal(scan.status, 'completed');
  t.equal(scan.discovered, 3000);
  t.equal(scan.finalized, 3000);

  const bound = await maxOutstanding(db.pool, fullScanId);
  t.ok(bound.max <= 300, `at most the window outstanding (max ${bound.max})`);
  t.ok(bound.max > 100, `the window was used, not one page at a time (max ${bound.max})`);
  t.ok(bound.pauses >= 5, `enumeration paused and resumed over and over (${bound.pauses} pauses)`);
  const { rows: q } = await db.pool.query<{ max: number }>('select max(rows)::int as max from public.queue_watch');
  // The window's scan jobs plus a few page, finalize batch and scan-start jobs.
  t.ok(q[0]!.max <= 300 + 40, `graphile-worker's job table held at most the window + a few (max ${q[0]!.max})`);
  const { rows: stored } = await db.pool.query('select scan_window, page_size, enumeration_paused_at from dsx.full_scans where id = $1', [fullScanId]);
  t.same(stored[0], { scan_window: 300, page_size: 100, enumeration_paused_at: null }, 'the scan records the window it ran with');
  t.same((await fullScanVerify(db.pool, fullScanId)).filter((c) => !c.ok), [], 'the invariant checker passes');
});

t.test('enumeration pauses when the next page would not fit and the finalize that makes room queues it, once', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const scope = await syntheticScope(db.pool, { objects: 1000 });
  const config = testConfig({ pageSize: 100, scanWindow: 200 });
  const step = new Stepper(db.pool, { dsxaUrl: emu.url, config });
  const { fullScanId } = await fullScanStart(db.pool, scope.id, 'tester');
  await step.drain('full-scan-scope');
  await step.drain('enumerate-scope-page'); // page 0: 50 objects; 50 + 100 fits in 200, so page 1 is queued
  t.equal((await queuedJobs(db.pool, 'enumerate-scope-page')).length, 1, 'the first page leaves room: the next one is queued');
  await step.drain('enumerate-scope-page'); // page 1: 150 outstanding; 150 + 100 does not fit
  t.same(await queuedJobs(db.pool, 'enumerate-scope-page'), [], 'no page is queued at the window');
  const paused = await db.pool.query('select discovered::int, finalized::int, enumeration_paused_at is not null as paused from dsx.full_scans where id = $1', [fullScanId]);
  t.same(paused.rows[0], { discovered: FIRST_PAGE_SIZE + 100, finalized: 0, paused: true });
  t.match(await fullScanProgressGet(db.pool, fullScanId), { in_flight: 150, scan_window: 200, enumeration_paused: true }, 'the progress view says the listing waits for room');

  // Scanning alone makes no room: only finalization does.
  await step.drain('scan-object');
  t.same(await queuedJobs(db.pool, 'enumerate-scope-page'), [], 'scanned but not finalized objects still count');
  // Finalize batches one by one: the page is queued by the one after which 100 more fit (50 finalized).
  const batches = await queuedJobs(db.pool, 'finalize-scan-object');
  t.ok(batches.length > 0, 'finalize batches are queued');
  let batch: (typeof batches)[number] | undefined;
  let finalized = 0;
  for (const b of batches) {
    await step.run(b);
    finalized = (await getScan(db.pool, fullScanId)).finalized;
    if ((await queuedJobs(db.pool, 'enumerate-scope-page')).length > 0) {
      batch = b;
      break;
    }
    await step.complete(b);
  }
  t.equal(finalized, 50, 'the page is queued as soon as 150 - finalized + 100 <= 200, not before');
  const jobs = await queuedJobs(db.pool, 'enumerate-scope-page');
  t.equal(jobs.length, 1, 'finalizing made room: the next page is queued');
  t.match(jobs[0]!.payload, { body: { full_scan_id: fullScanId, page_no: 2 } });
  // The finalize job run again (a redelivery) finalizes nothing and queues no second page.
  await step.run(batch!);
  await step.complete(batch!);
  t.equal((await queuedJobs(db.pool, 'enumerate-scope-page')).length, 1, 'a redelivered finalize queues nothing more');
  // The resumed page job run twice records the page once.
  const [page] = await queuedJobs(db.pool, 'enumerate-scope-page');
  await step.run(page!);
  await step.run(page!);
  await step.complete(page!);
  const after = await getScan(db.pool, fullScanId);
  t.equal(after.pages, 3);
  t.equal(after.discovered, FIRST_PAGE_SIZE + 200);

  await step.runAll();
  const done = await getScan(db.pool, fullScanId);
  t.equal(done.status, 'completed');
  t.equal(done.finalized, 1000);
  t.same((await fullScanVerify(db.pool, fullScanId)).filter((c) => !c.ok), []);
});

t.test('a scan paused at its window drains or is interrupted by cancel like any other', async (t) => {
  for (const mode of ['drain', 'interrupt'] as const) {
    await t.test(mode, async (t) => {
      const db = await createTestDatabase(t);
      const emu = await emulator(t);
      const scope = await syntheticScope(db.pool, { objects: 1000 });
      const step = new Stepper(db.pool, { dsxaUrl: emu.url, config: testConfig({ pageSize: 100, scanWindow: 200 }) });
      const { fullScanId } = await fullScanStart(db.pool, scope.id, 'tester');
      await step.drain('full-scan-scope');
      await step.drain('enumerate-scope-page');
      await step.drain('enumerate-scope-page');
      t.equal((await getScan(db.pool, fullScanId)).discovered, 150);
      await fullScanCancel(db.pool, fullScanId, mode, 'tester');
      await step.runAll();
      const s = await getScan(db.pool, fullScanId);
      t.equal(s.status, 'canceled');
      t.ok(s.finished_at, 'finished');
      t.equal(s.discovered, 150, 'no page is enumerated after the cancel');
      t.equal(s.finalized, 150);
      if (mode === 'interrupt') t.equal(s.canceled_count, 150);
      else t.equal(s.clean_count, 150);
      t.same(await queuedJobs(db.pool), [], 'nothing left in the queue');
      t.same((await fullScanVerify(db.pool, fullScanId)).filter((c) => !c.ok), []);
    });
  }
});

t.test('a scan paused at its window when its workers stop resumes under new workers', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const scope = await syntheticScope(db.pool, { objects: 600 });
  const config = testConfig({ pageSize: 100, scanWindow: 200 });
  // Only enumeration runs first: the scan fills its window and pauses with nothing being scanned.
  const enumerator = await workers(t, db.pool, { dsxaUrl: emu.url, config, roles: ['enumerate'] });
  const { fullScanId } = await fullScanStart(db.pool, scope.id, 'tester');
  const pausedEvent = new Promise<void>((resolve) => {
    enumerator.runner.events.on('job:success', async () => {
      const { rows } = await db.pool.query('select enumeration_paused_at is not null as p from dsx.full_scans where id = $1', [fullScanId]);
      if (rows[0]?.p) resolve();
    });
  });
  await pausedEvent;
  await enumerator.stop();
  t.equal((await getScan(db.pool, fullScanId)).discovered, 150, 'paused at the window');
  await workers(t, db.pool, { dsxaUrl: emu.url, config });
  const s = await waitForScan(db.pool, fullScanId);
  t.equal(s.status, 'completed');
  t.equal(s.finalized, 600);
});

t.test('two scans at once both progress: neither waits for the other to finish', async (t) => {
  const db = await createTestDatabase(t);
  await watchBounds(db.pool);
  const emu = await emulator(t, { latencyMs: 2 });
  const a = await syntheticScope(db.pool, { objects: 2000, name: 'a' });
  const b = await syntheticScope(db.pool, { objects: 2000, name: 'b' });
  const config = testConfig({ pageSize: 100, scanWindow: 300 });
  await workers(t, db.pool, { dsxaUrl: emu.url, config, concurrency: 8 });
  const sa = await fullScanStart(db.pool, a.id, 'tester');
  const sb = await fullScanStart(db.pool, b.id, 'tester');
  const first = await Promise.race([waitForScan(db.pool, sa.fullScanId, 120_000), waitForScan(db.pool, sb.fullScanId, 120_000)]);
  const other = await getScan(db.pool, first.id === sa.fullScanId ? sb.fullScanId : sa.fullScanId);
  // Each scan's jobs enter the queue a page at a time as its own window frees: the fetch order
  // interleaves them, so when one finishes the other is far along.
  t.ok(other.finalized >= 0.4 * 2000, `the other scan had ${other.finalized} of 2000 finalized when the first finished`);
  const [wa, wb] = [await waitForScan(db.pool, sa.fullScanId, 120_000), await waitForScan(db.pool, sb.fullScanId, 120_000)];
  t.equal(wa.finalized + wb.finalized, 4000);
  for (const id of [sa.fullScanId, sb.fullScanId]) t.ok((await maxOutstanding(db.pool, id)).max <= 300, `scan ${id} stayed within its window`);
});

t.test('DSX_SCAN_WINDOW is validated: below the page size or not a positive integer is one line naming the variable', async (t) => {
  t.throws(() => loadConfig({ DSX_SCAN_WINDOW: '100', DSX_PAGE_SIZE: '500' }), /DSX_SCAN_WINDOW: 100 is below DSX_PAGE_SIZE \(500\)/);
  t.throws(() => loadConfig({ DSX_SCAN_WINDOW: 'many' }), /invalid environment variable DSX_SCAN_WINDOW/);
  t.throws(() => loadConfig({ DSX_SCAN_WINDOW: '0' }), /invalid environment variable DSX_SCAN_WINDOW/);
  t.equal(loadConfig({ DSX_SCAN_WINDOW: '5000' }).scanWindow, 5000);
  t.equal(loadConfig({}).scanWindow, 2048, 'the default: 16 x the default concurrency of 128 (4 pages of 500 would be 2,000)');
  t.equal(loadConfig({ DSX_WORKER_CONCURRENCY: '8' }).scanWindow, 2000, 'four pages when the concurrency is small');
  t.equal(loadConfig({ DSX_SCAN_WINDOW: '' }).scanWindow, 2048, 'empty means the default');
});
