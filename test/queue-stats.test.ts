/** The job table gets planner statistics as soon as a full scan fills it (src/db/queue-stats.ts). */
import t from 'tap';
import { QueueStatistics } from '../src/db/queue-stats.ts';
import { log } from '../src/log.ts';
import { fullScanStart } from '../src/db/sql/full-scans.ts';
import { createTestDatabase } from './helpers/db.ts';
import { emulator, queuedJobs, Stepper, syntheticScope, testConfig } from './helpers/pipeline.ts';

async function reltuples(pool: import('pg').Pool): Promise<number> {
  const { rows } = await pool.query(`select reltuples from pg_class where oid = 'graphile_worker._private_jobs'::regclass`);
  return Number(rows[0].reltuples);
}

t.test('analyzes a job table that was never analyzed, once it holds jobs; then only when it has grown', async (t) => {
  const db = await createTestDatabase(t);
  const stats = new QueueStatistics(db.pool, log, 0);
  const addJobs = (n: number) =>
    db.pool.query(`select graphile_worker.add_jobs(array(select row('noop', '{}'::json, null, null, null, null, null, null)::graphile_worker.job_spec from generate_series(1, $1)))`, [n]);
  t.equal(await stats.refresh(), false, 'an empty table is left alone');
  await addJobs(2_000);
  // PostgreSQL publishes table counters with a delay of up to a second.
  let analyzed = false;
  for (let i = 0; i < 40 && !analyzed; i++) {
    analyzed = await stats.refresh();
    if (!analyzed) await new Promise((r) => setTimeout(r, 100));
  }
  t.ok(analyzed, 'analyzed once it holds jobs');
  t.equal(await reltuples(db.pool), 2_000, 'the statistics count the queued jobs');
  t.equal(await stats.refresh(), false, 'fresh statistics are left alone');
  const throttled = new QueueStatistics(db.pool, log, 60_000);
  await throttled.refresh();
  t.equal(await throttled.refresh(), false, 'at most one check per interval');
});

t.test('enumeration analyzes the job table it fills', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const scope = await syntheticScope(db.pool, { objects: 5_000 });
  // A window as large as the scope: this test is about enumeration filling the table, not pausing.
  const stepper = new Stepper(db.pool, { dsxaUrl: emu.url, config: testConfig({ scanWindow: 10_000 }) });
  stepper.ctx.queueStats = new QueueStatistics(db.pool, log, 0); // check after every page
  await fullScanStart(db.pool, scope.id, 'tester');
  await stepper.drain('full-scan-scope');
  t.ok((await reltuples(db.pool)) < 0, 'a new database: the job table was never analyzed');
  // Pages of 100 objects, one at a time (PostgreSQL publishes table counters up to a second late).
  for (let i = 0; i < 60 && (await reltuples(db.pool)) < 0; i++) {
    const [page] = await queuedJobs(db.pool, 'enumerate-scope-page');
    if (!page) break;
    await stepper.run(page);
    await stepper.complete(page);
    await new Promise((r) => setTimeout(r, 50));
  }
  t.ok((await reltuples(db.pool)) >= 1_000, 'a page analyzed the job table once it held the scan jobs');
});
