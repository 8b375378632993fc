/** Queue order (graphile-worker fetches by priority, then run_at): what runs ahead of what. */
import t from 'tap';
import { fullScanStart } from '../src/db/sql/full-scans.ts';
import { createTestDatabase } from './helpers/db.ts';
import { emulator, queuedJobs, Stepper, syntheticScope } from './helpers/pipeline.ts';

t.test("enumeration and a second scope's scan start run ahead of the full-scan backlog", async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const a = await syntheticScope(db.pool, { objects: 120, name: 'a' });
  const b = await syntheticScope(db.pool, { objects: 10, name: 'b' });
  const stepper = new Stepper(db.pool, { dsxaUrl: emu.url });
  await fullScanStart(db.pool, a.id, 'tester');
  await stepper.drain('full-scan-scope');
  const [page0] = await queuedJobs(db.pool, 'enumerate-scope-page');
  await stepper.run(page0!);
  await stepper.complete(page0!);

  let order = (await queuedJobs(db.pool)).map((j) => j.task);
  t.ok(order.filter((x) => x === 'scan-object').length > 0, 'page 0 queued its scan jobs');
  t.equal(order[0], 'enumerate-scope-page', 'the next page comes before the scan jobs queued ahead of it');

  const second = await fullScanStart(db.pool, b.id, 'tester');
  order = (await queuedJobs(db.pool)).map((j) => j.task);
  t.ok(order.indexOf('full-scan-scope') < order.indexOf('scan-object'), "scope b's scan starts before scope a's backlog is fetched");

  // Both scans run to the end.
  await stepper.runAll();
  const { rows } = await db.pool.query('select status from dsx.full_scans where id = $1', [second.fullScanId]);
  t.equal(rows[0].status, 'completed');
  const { rows: all } = await db.pool.query(`select count(*)::int as n from dsx.full_scans where status = 'completed'`);
  t.equal(all[0].n, 2);
});
