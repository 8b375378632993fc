/** The job table gets planner statistics as soon as a full scan fills it (src/db/queue-stats.ts). */
import type pg from 'pg';
import t from 'tap';
import { QueueStatistics } from '../src/db/queue-stats.ts';
import { log } from '../src/log.ts';
import { fullScanStart } from '../src/db/sql/full-scans.ts';
import { createTestDatabase } from './helpers/db.ts';
import { emulator, queuedJobs, Stepper, syntheticScope, testConfig, waitFor } from './helpers/pipeline.ts';

/**
 * Publishes the table counters of every session of `pool` now. A backend sends its counters at most
 * once a second (PGSTAT_MIN_INTERVAL); pg_stat_force_next_flush() (PostgreSQL 15+) makes it send them
 * when it goes idle, before its answer. PostgreSQL 14 has no such call: its collector is polled.
 */
async function publishCounters(pool: pg.Pool, published: () => Promise<boolean>): Promise<void> {
  const { rows } = await pool.query<{ v: number }>(`select current_setting('server_version_num')::int as v`);
  if (rows[0]!.v < 150000) return waitFor(published, 'PostgreSQL 14 to publish the table counters', 10_000);
  const clients = await Promise.all(Array.from({ length: pool.totalCount }, () => pool.connect()));
  try {
    for (const c of clients) await c.query('select pg_stat_force_next_flush()');
  } finally {
    for (const c of clients) c.release();
  }
}

async function reltuples(pool: pg.Pool): Promise<number> {
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
  await publishCounters(db.pool, async () => (await db.pool.query(`select n_live_tup from pg_stat_all_tables where relid = 'graphile_worker._private_jobs'::regclass`)).rows[0].n_live_tup >= 2_000);
  t.ok(await stats.refresh(), 'analyzed once it holds jobs');
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
  // Pages of 100 objects, one at a time, each page's counters published before the next page checks.
  let queued = 0;
  for (let i = 0; i < 60 && (await reltuples(db.pool)) < 0; i++) {
    const [page] = await queuedJobs(db.pool, 'enumerate-scope-page');
    if (!page) break;
    await stepper.run(page);
    await stepper.complete(page);
    const { rows } = await db.pool.query<{ n: number }>('select count(*)::int as n from graphile_worker._private_jobs');
    queued = rows[0]!.n;
    await publishCounters(db.pool, async () => (await db.pool.query(`select n_live_tup from pg_stat_all_tables where relid = 'graphile_worker._private_jobs'::regclass`)).rows[0].n_live_tup >= queued);
  }
  t.ok((await reltuples(db.pool)) >= 1_000, 'a page analyzed the job table once it held the scan jobs');
});
