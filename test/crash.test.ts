import { spawn } from 'node:child_process';
import path from 'node:path';
import t from 'tap';
import { PROJECT_DIR } from '../src/config.ts';
import { fullScanStart, fullScanVerify } from '../src/db/sql/full-scans.ts';
import { createTestDatabase } from './helpers/db.ts';
import { emulator, getScan, syntheticScope, waitFor, waitForFinalized, waitForScan } from './helpers/pipeline.ts';
import { testRandom } from './helpers/seed.ts';

const BIN = path.join(PROJECT_DIR, 'bin', 'dsx-connect.js');

t.test('jobs of a dead worker are unlocked; jobs of a live worker never are', async (t) => {
  const db = await createTestDatabase(t);
  await db.pool.query(`select graphile_worker.add_jobs(array[
    row('scan-object', '{}'::json, null, null, null, 'dead-job', null, null)::graphile_worker.job_spec,
    row('scan-object', '{}'::json, null, null, null, 'live-job', null, null)::graphile_worker.job_spec,
    row('scan-object', '{}'::json, null, null, null, 'silent-job', null, null)::graphile_worker.job_spec])`);
  // A crashed pool (heartbeat long ago), a live pool running a job for an hour, a pool that never beat.
  await db.pool.query(`insert into dsx_private.worker_heartbeats (worker_id, hostname, pid, roles, last_seen_at) values
    ('pool-dead', 'h', 1, '{scan}', now() - interval '10 minutes'), ('pool-live', 'h', 2, '{scan}', now())`);
  await db.pool.query(`update graphile_worker._private_jobs set locked_at = now() - interval '1 hour',
    locked_by = case key when 'dead-job' then 'pool-dead' when 'live-job' then 'pool-live' else 'pool-silent' end`);
  const { rows } = await db.pool.query(`select dsx_private.rescue_dead_workers(interval '60 seconds') as ids`);
  t.same([...rows[0].ids].sort(), ['pool-dead', 'pool-silent']);
  const { rows: jobs } = await db.pool.query(`select key, locked_by from graphile_worker._private_jobs order by key`);
  t.same(jobs, [
    { key: 'dead-job', locked_by: null },
    { key: 'live-job', locked_by: 'pool-live' },
    { key: 'silent-job', locked_by: null },
  ]);
  const { rows: beats } = await db.pool.query(`select worker_id from dsx_private.worker_heartbeats`);
  t.same(beats, [{ worker_id: 'pool-live' }]);
});

t.test('a scan survives scan and finalize workers SIGKILLed at random moments, and verifies', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t, { latencyMs: 40, capacity: 8 });
  const scope = await syntheticScope(db.pool, { objects: 5000 });
  const env = {
    ...process.env,
    DATABASE_URL: db.url,
    DSXA_URL: emu.url,
    DSX_LOG_LEVEL: 'silent',
    DSX_PAGE_SIZE: '250',
    DSX_WORKER_CONCURRENCY: '32',
    DSX_WORKER_HEARTBEAT_MS: '250',
    DSX_WORKER_DEAD_AFTER_MS: '1500',
  };
  const spawnWorker = (roles: string) => {
    const proc = spawn(process.execPath, [BIN, 'worker', '--roles', roles], { env, stdio: 'ignore' });
    return { proc, exited: new Promise<void>((resolve) => proc.once('exit', () => resolve())) };
  };
  const survivor = spawnWorker('enumerate,remediate,notify');
  const killable = ['scan', 'scan', 'finalize', 'finalize'].map((roles) => ({ roles, ...spawnWorker(roles) }));
  t.teardown(async () => {
    for (const w of [survivor, ...killable]) w.proc.kill('SIGKILL');
    await Promise.all([survivor, ...killable].map((w) => w.exited));
  });
  const { fullScanId } = await fullScanStart(db.pool, scope.id, 'tester');
  // The moments are random (seeded: see test/helpers/seed.ts) but tied to progress rather than to the
  // clock: a kill after every 100-300 newly finalized objects, wherever the workers are at that moment.
  const random = testRandom();
  let kills = 0;
  while (kills < 12) {
    const { finalized, finished_at } = await getScan(db.pool, fullScanId);
    if (finished_at) break;
    const at = await waitForFinalized(db.pool, fullScanId, finalized + 100 + Math.floor(random() * 200), 150_000);
    if (at.finished_at) break;
    const victim = killable[Math.floor(random() * killable.length)]!;
    victim.proc.kill('SIGKILL');
    await victim.exited;
    Object.assign(victim, spawnWorker(victim.roles));
    kills++;
  }
  t.ok(kills >= 10, `workers were SIGKILLed ${kills} times during the scan`);
  await waitForScan(db.pool, fullScanId, 150_000);
  const scan = await getScan(db.pool, fullScanId);
  t.match(scan, { status: 'completed', discovered: 5000, finalized: 5000, malicious_count: 5, clean_count: 4995 });
  // One check is "no scan job left queued or locked": the last jobs' rows are deleted by the worker
  // processes' completion batches (and a killed worker's by the rescue of its locks), which nothing
  // announces to this process, so the checker is polled until it passes.
  await waitFor(async () => (await fullScanVerify(db.pool, fullScanId)).every((c) => c.ok), 'the invariant checker to pass', 30_000);
  const checks = await fullScanVerify(db.pool, fullScanId);
  t.ok(checks.length >= 7);
  for (const c of checks) t.ok(c.ok, `${c.check_name}: ${c.detail}`);
});
