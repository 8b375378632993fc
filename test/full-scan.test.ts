import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { FIRST_PAGE_SIZE } from '../src/pipeline/full-scan.ts';
import t from 'tap';
import { fullScanCancel, fullScanStart, fullScanVerify } from '../src/db/sql/full-scans.ts';
import { generateTree } from '../src/testing/tree.ts';
import { createTestDatabase } from './helpers/db.ts';
import { emulator, fsScope, getScan, queuedJobs, syntheticScope, waitForScan, workers } from './helpers/pipeline.ts';

t.test('a full scan of a generated tree completes with exact counts per outcome, and its results are queryable', async (t) => {
  const db = await createTestDatabase(t);
  const dir = t.testdir();
  const tree = generateTree(dir, { files: 1200, eicar: 4, empty: 6 });
  const emu = await emulator(t);
  const scope = await fsScope(db.pool, { dir });
  await workers(t, db.pool, { dsxaUrl: emu.url });

  const start = await fullScanStart(db.pool, scope.id, 'tester');
  t.equal(start.alreadyActive, false);
  const scan = await waitForScan(db.pool, start.fullScanId);

  t.equal(scan.status, 'completed');
  t.equal(scan.discovered, tree.files);
  t.equal(scan.finalized, tree.files);
  t.equal(scan.malicious_count, tree.eicar);
  t.equal(scan.unable_to_scan_count, tree.encrypted);
  t.equal(scan.clean_count, tree.clean);
  t.equal(scan.fetch_failed_count + scan.timeout_count + scan.canceled_count, 0);
  t.ok(scan.enumeration_exhausted);
  // A small first page (scanning starts at once), then pages of 100; the connector peeks, so the last
  // full page ends enumeration.
  t.equal(scan.pages, 1 + Math.ceil((tree.files - FIRST_PAGE_SIZE) / 100));

  const { rows: byOutcome } = await db.pool.query(
    `select outcome, reason, count(*)::int as n from dsx.scan_results where full_scan_id = $1 group by 1, 2 order by 1, 2`,
    [scan.id],
  );
  t.same(byOutcome, [
    { outcome: 'clean', reason: null, n: tree.clean },
    { outcome: 'malicious', reason: 'virus', n: tree.eicar },
    { outcome: 'unable_to_scan', reason: 'encrypted_file', n: 1 },
  ]);
  const { rows: malicious } = await db.pool.query(
    `select object_identity from dsx.scan_results where full_scan_id = $1 and outcome = 'malicious' order by 1`,
    [scan.id],
  );
  t.same(malicious.map((r) => r.object_identity), [...tree.eicarPaths].sort());
  const { rows: raw } = await db.pool.query(
    `select raw_result->>'verdict' as verdict, normalization_version, state from dsx.scan_results where full_scan_id = $1 and outcome = 'unable_to_scan'`,
    [scan.id],
  );
  t.same(raw, [{ verdict: 'Not Scanned', normalization_version: 1, state: 'finalized' }]);

  const { rows: objects } = await db.pool.query(`select count(*)::int as n, count(*) filter (where last_outcome = 'malicious')::int as m from dsx.objects where scope_id = $1`, [scope.id]);
  t.same(objects[0], { n: tree.files, m: tree.eicar });
  const { rows: audit } = await db.pool.query(
    `select action, count(*)::int as n from dsx.audit_log where full_scan_id = $1 group by 1 order by 1`,
    [scan.id],
  );
  t.same(audit, [
    { action: 'full_scan.completed', n: 1 },
    { action: 'full_scan.enumeration_exhausted', n: 1 },
    { action: 'full_scan.requested', n: 1 },
    { action: 'full_scan.started', n: 1 },
    { action: 'object.finalized', n: tree.files },
  ]);
  // Default policy: malicious -> notify; with no channel configured the decision is recorded as skipped.
  const { rows: effects } = await db.pool.query(`select kind, status, count(*)::int as n from dsx.side_effects group by 1, 2`);
  t.same(effects, [{ kind: 'notification', status: 'skipped', n: tree.eicar }]);
  t.same(await queuedJobs(db.pool), [], 'nothing is left in the queue');
  const checks = await fullScanVerify(db.pool, scan.id);
  t.same(checks.filter((c) => !c.ok), [], 'the invariant checker passes');
  t.equal(checks.length, 8);
});

t.test('a second start while a scan is active returns the same id and enqueues nothing', async (t) => {
  const db = await createTestDatabase(t);
  const scope = await syntheticScope(db.pool, { objects: 50 });
  const first = await fullScanStart(db.pool, scope.id, 'a');
  const jobsBefore = await queuedJobs(db.pool);
  const second = await fullScanStart(db.pool, scope.id, 'b');
  t.same(second, { fullScanId: first.fullScanId, fullScanRowId: String(first.fullScanId), alreadyActive: true, status: 'queued' });
  t.same(await queuedJobs(db.pool), jobsBefore);
  const concurrent = await Promise.all(Array.from({ length: 10 }, () => fullScanStart(db.pool, scope.id, 'c')));
  t.ok(concurrent.every((r) => r.fullScanId === first.fullScanId && r.alreadyActive));
  await t.rejects(
    db.pool.query(`insert into dsx.full_scans (scope_id, requested_by, status) values ($1, 'x', 'running')`, [scope.id]),
    { code: '23505' },
    'the database itself refuses a second active scan',
  );
});

t.test('an empty scope completes at once', async (t) => {
  const db = await createTestDatabase(t);
  const dir = t.testdir({ empty: {} });
  const emu = await emulator(t);
  const scope = await fsScope(db.pool, { dir, root: 'empty' });
  await workers(t, db.pool, { dsxaUrl: emu.url });
  const probes = emu.stats().requests; // the worker's check of the scanner at start
  const { fullScanId } = await fullScanStart(db.pool, scope.id, 'tester');
  const scan = await waitForScan(db.pool, fullScanId, 10_000);
  t.match(scan, { status: 'completed', discovered: 0, finalized: 0, pages: 1, enumeration_exhausted: true });
  t.equal(emu.stats().requests, probes, 'no object sent to the scanner');
});

t.test('include and exclude globs decide what is discovered', async (t) => {
  const db = await createTestDatabase(t);
  const dir = t.testdir({ docs: { 'a.pdf': 'a', 'b.txt': 'b', tmp: { 'c.pdf': 'c' } } });
  const emu = await emulator(t);
  const scope = await fsScope(db.pool, { dir, root: 'docs', include: ['**/*.pdf'], exclude: ['tmp/**'] });
  await workers(t, db.pool, { dsxaUrl: emu.url });
  const { fullScanId } = await fullScanStart(db.pool, scope.id, 'tester');
  const scan = await waitForScan(db.pool, fullScanId);
  t.equal(scan.discovered, 1);
  const { rows } = await db.pool.query('select object_identity from dsx.scan_results');
  t.same(rows, [{ object_identity: 'docs/a.pdf' }]);
});

t.test('cancel', async (t) => {
  t.test('a queued scan canceled before it starts ends at once and enumerates nothing', async (t) => {
    const db = await createTestDatabase(t);
    const scope = await syntheticScope(db.pool, { objects: 100 });
    const emu = await emulator(t);
    const { fullScanId } = await fullScanStart(db.pool, scope.id, 'tester');
    t.equal(await fullScanCancel(db.pool, fullScanId, 'interrupt', 'tester'), 'canceled');
    await workers(t, db.pool, { dsxaUrl: emu.url });
    const probes = emu.stats().requests; // the worker's check of the scanner at start
    await new Promise((r) => setTimeout(r, 500));
    const scan = await getScan(db.pool, fullScanId);
    t.match(scan, { status: 'canceled', discovered: 0, finalized: 0, pages: 0 });
    t.ok(scan.finished_at);
    t.equal(emu.stats().requests, probes, 'no object sent to the scanner');
  });

  for (const mode of ['drain', 'interrupt'] as const) {
    t.test(`${mode}: mid-scan, no new pages, counters consistent, ends canceled`, async (t) => {
      const db = await createTestDatabase(t);
      const scope = await syntheticScope(db.pool, { objects: 3000 });
      const emu = await emulator(t, { latencyMs: 20, capacity: 4 });
      await workers(t, db.pool, { dsxaUrl: emu.url });
      const { fullScanId } = await fullScanStart(db.pool, scope.id, 'tester');
      // Wait until some objects are finalized but the scan is far from done.
      for (;;) {
        const s = await getScan(db.pool, fullScanId);
        if (s.finalized >= 20) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      await fullScanCancel(db.pool, fullScanId, mode, 'tester');
      const atCancel = await getScan(db.pool, fullScanId);
      t.equal(atCancel.status, 'canceled');
      const scan = await waitForScan(db.pool, fullScanId, 60_000);
      t.equal(scan.status, 'canceled');
      t.equal(scan.discovered, atCancel.discovered, 'no page is recorded after the cancel');
      t.ok(scan.discovered < 3000, 'enumeration stopped early');
      t.equal(scan.finalized, scan.discovered, 'every discovered object is finalized');
      const sum = scan.clean_count + scan.malicious_count + scan.canceled_count;
      t.equal(sum, scan.finalized);
      const { rows } = await db.pool.query(
        `select count(*) filter (where state <> 'finalized')::int as open, count(*)::int as n from dsx.scan_results where full_scan_id = $1`,
        [fullScanId],
      );
      t.same(rows[0], { open: 0, n: scan.discovered });
      if (mode === 'interrupt') {
        t.ok(scan.canceled_count > 0, 'objects not yet scanned end as canceled');
        // Rows a finalize or scan batch holds at that instant are skipped by the cancel and finalized
        // by that batch; with 16 jobs in flight that is a handful at most.
        t.ok(atCancel.discovered - atCancel.finalized <= 64, 'interrupt finalizes the rest in the cancel transaction');
      } else {
        t.equal(scan.canceled_count, 0, 'drain scans what was queued');
      }
      // Give in-flight jobs time to run: nothing may change afterwards.
      await new Promise((r) => setTimeout(r, 300));
      t.same(await getScan(db.pool, fullScanId), scan);
    });
  }

  t.test('canceling a finished scan changes nothing; bad input is refused', async (t) => {
    const db = await createTestDatabase(t);
    const dir = t.testdir({ 'a.txt': 'a' });
    const emu = await emulator(t);
    const scope = await fsScope(db.pool, { dir });
    await workers(t, db.pool, { dsxaUrl: emu.url });
    const { fullScanId } = await fullScanStart(db.pool, scope.id, 'tester');
    const done = await waitForScan(db.pool, fullScanId);
    t.equal(await fullScanCancel(db.pool, fullScanId, 'interrupt', 'tester'), 'completed');
    t.same(await getScan(db.pool, fullScanId), done);
    await t.rejects(fullScanCancel(db.pool, fullScanId, 'later' as never, 'x'), /cancel mode must be drain or interrupt/);
    await t.rejects(fullScanCancel(db.pool, 999999, 'drain', 'x'), /unknown full scan id 999999/);
    await t.rejects(fullScanStart(db.pool, 424242, 'x'), /unknown scope id 424242/);
  });
});

t.test('one object the scanner keeps failing on ends as unable_to_scan or timeout; the others scan', async (t) => {
  for (const [fault, outcome, reason] of [
    ['503', 'unable_to_scan', 'scanner_unavailable'],
    ['hang', 'timeout', 'scanner_timeout'],
  ] as const) {
    const db = await createTestDatabase(t);
    const dir = t.testdir({ 'a.txt': 'a', 'b.txt': 'b', 'c.txt': 'c' });
    // The scan job names the object's key in X-Custom-Metadata: the emulator fails b.txt only.
    const bKey = `:${crypto.createHash('sha256').update('b.txt').digest('hex')}`;
    const emu = await emulator(t, { faultOn: (metadata) => (metadata.includes(bKey) ? fault : null) });
    const scope = await fsScope(db.pool, { dir });
    const config = { ...(await import('./helpers/pipeline.ts')).testConfig({ scanMaxAttempts: 2, dsxaTimeoutMs: 300 }) };
    await workers(t, db.pool, { dsxaUrl: emu.url, config });
    const { fullScanId } = await fullScanStart(db.pool, scope.id, 'tester');
    const scan = await waitForScan(db.pool, fullScanId, 30_000);
    t.equal(scan.status, 'completed', `${fault}: completed`);
    const { rows } = await db.pool.query(`select object_identity, outcome, reason, attempts from dsx.scan_results order by object_identity`);
    t.same(
      rows,
      [
        { object_identity: 'a.txt', outcome: 'clean', reason: null, attempts: 1 },
        { object_identity: 'b.txt', outcome, reason, attempts: 2 },
        { object_identity: 'c.txt', outcome: 'clean', reason: null, attempts: 1 },
      ],
      `${fault}: b.txt ends ${outcome}/${reason} after 2 attempts, the scanner stays available for the others`,
    );
  }
});

t.test('an object deleted between enumeration and fetch finalizes as fetch_failed/not_found', async (t) => {
  const db = await createTestDatabase(t);
  const dir = t.testdir({ 'keep.txt': 'k', 'gone.txt': 'g' });
  const emu = await emulator(t);
  const scope = await fsScope(db.pool, { dir });
  const { Stepper } = await import('./helpers/pipeline.ts');
  const stepper = new Stepper(db.pool, { dsxaUrl: emu.url });
  const { fullScanId } = await fullScanStart(db.pool, scope.id, 'tester');
  await stepper.drain('full-scan-scope');
  await stepper.drain('enumerate-scope-page');
  fs.rmSync(path.join(dir, 'gone.txt'));
  await stepper.runAll();
  const scan = await getScan(db.pool, fullScanId);
  t.match(scan, { status: 'completed', discovered: 2, clean_count: 1, fetch_failed_count: 1 });
  const { rows } = await db.pool.query(`select object_identity, outcome, reason from dsx.scan_results where outcome = 'fetch_failed'`);
  t.same(rows, [{ object_identity: 'gone.txt', outcome: 'fetch_failed', reason: 'not_found' }]);
});

t.test('a failed scan finishes when the objects it already queued are finalized, not before', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const scope = await syntheticScope(db.pool, { objects: 500 });
  const { Stepper } = await import('./helpers/pipeline.ts');
  const stepper = new Stepper(db.pool, { dsxaUrl: emu.url });
  const { fullScanId } = await fullScanStart(db.pool, scope.id, 'tester');
  await stepper.drain('full-scan-scope');
  const [page0] = await queuedJobs(db.pool, 'enumerate-scope-page');
  await stepper.run(page0!);
  await stepper.complete(page0!);
  // Enumeration cannot go on (as when the scope root vanishes): the scan fails with objects in flight.
  await db.pool.query(`select dsx_private.fail_full_scan($1, 'scope root vanished')`, [fullScanId]);
  let scan = await getScan(db.pool, fullScanId);
  t.match(scan, { status: 'failed', error: 'scope root vanished', finished_at: null }, 'failed, not finished: objects are in flight');
  t.ok(scan.discovered > 0 && scan.finalized === 0);
  await stepper.runAll();
  scan = await getScan(db.pool, fullScanId);
  t.equal(scan.status, 'failed');
  t.equal(scan.finalized, scan.discovered, 'every queued object finalized');
  t.ok(scan.finished_at, 'finished once the last one was');
  const { rows } = await db.pool.query(`select bool_and(ok) as ok from dsx.verify_full_scan($1)`, [fullScanId]);
  t.ok(rows[0].ok, 'the invariant checker passes');

  // A scan failing with nothing in flight finishes at once.
  const empty = await syntheticScope(db.pool, { objects: 0, name: 'empty' });
  const second = await fullScanStart(db.pool, empty.id, 'tester');
  await db.pool.query(`select dsx_private.fail_full_scan($1, 'no luck')`, [second.fullScanId]);
  t.ok((await getScan(db.pool, second.fullScanId)).finished_at, 'nothing in flight: finished at once');
});
