/**
 * FinalizeScanObjectJobs travel as graphile-worker batch jobs: one job per scan batch, its payload an
 * array of per-object envelopes. Each envelope is finalized once however often the job runs, and an
 * envelope that fails is retried alone.
 */
import t, { type Test } from 'tap';
import { fullScanStart } from '../src/db/sql/full-scans.ts';
import { createTestDatabase } from './helpers/db.ts';
import { emulator, getScan, queuedJobs, Stepper, syntheticScope, waitFor, workers } from './helpers/pipeline.ts';
import { jobEvents } from './helpers/wait.ts';

type Envelope = { idempotency_key: string; job_type: string };

async function scannedBatch(t: Test, objects: number) {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const scope = await syntheticScope(db.pool, { objects });
  const stepper = new Stepper(db.pool, { dsxaUrl: emu.url });
  const { fullScanId } = await fullScanStart(db.pool, scope.id, 'tester');
  await stepper.drain('full-scan-scope');
  await stepper.drain('enumerate-scope-page');
  // Scan jobs run side by side, as a worker runs them: their results are recorded in shared batches.
  const scans = await queuedJobs(db.pool, 'scan-object');
  await Promise.all(scans.map((j) => stepper.run(j)));
  for (const j of scans) await stepper.complete(j);
  return { db, emu, stepper, fullScanId };
}

t.test('a scan batch emits one finalize job whose payload holds one envelope per object', async (t) => {
  const { db, emu, stepper, fullScanId } = await scannedBatch(t, 20);
  const jobs = await queuedJobs(db.pool, 'finalize-scan-object');
  t.ok(jobs.length >= 1 && jobs.length < 20, `scan results share finalize jobs (${jobs.length} jobs for 20 objects)`);
  const envelopes = jobs.flatMap((j) => j.payload as Envelope[]);
  t.ok(jobs.every((j) => Array.isArray(j.payload)), 'every finalize job is a batch job');
  t.equal(envelopes.length, 20, 'one envelope per object');
  t.equal(new Set(envelopes.map((e) => e.idempotency_key)).size, 20, 'no object twice');
  t.ok(envelopes.every((e) => e.job_type === 'finalize-scan-object'));
  t.equal(emu.stats().requests, 20);

  // Each batch job delivered twice: the second run changes nothing.
  for (const job of jobs) {
    await stepper.run(job);
    const once = await db.pool.query('select finalized, clean_count, malicious_count from dsx.full_scans');
    const audit = await db.pool.query(`select count(*)::int as n from dsx.audit_log where action = 'object.finalized'`);
    await stepper.run(job);
    t.same((await db.pool.query('select finalized, clean_count, malicious_count from dsx.full_scans')).rows, once.rows, 'a second run changes no counter');
    t.same((await db.pool.query(`select count(*)::int as n from dsx.audit_log where action = 'object.finalized'`)).rows, audit.rows, 'nor the audit trail');
    await stepper.complete(job);
  }
  t.match(await getScan(db.pool, fullScanId), { status: 'completed', discovered: 20, finalized: 20 });
  const { rows } = await db.pool.query('select bool_and(ok) as ok from dsx.verify_full_scan($1)', [fullScanId]);
  t.equal(rows[0].ok, true, 'every invariant holds');

  // The checker looks inside batch jobs: an envelope of this scan left in the queue is reported.
  await db.pool.query(`select graphile_worker.add_job('finalize-scan-object', $1::json)`, [JSON.stringify([{}, envelopes[0]])]);
  const { rows: left } = await db.pool.query(
    `select ok, detail from dsx.verify_full_scan($1) where check_name = 'no scan job left queued or locked'`, [fullScanId]);
  t.same(left, [{ ok: false, detail: '1 jobs' }], 'a queued envelope inside a batch job is found');
});

t.test('an envelope that fails is retried alone, an invalid one recorded; the rest of its batch is finalized', async (t) => {
  const { db, emu, fullScanId } = await scannedBatch(t, 6);
  // Gather every envelope into one batch job, with an invalid envelope (recorded, not retried) and one of
  // a newer schema version (a rolling deploy: thrown, so graphile-worker retries it alone).
  const jobs = await queuedJobs(db.pool, 'finalize-scan-object');
  const envelopes = jobs.flatMap((j) => j.payload as Envelope[]);
  const bad = { ...envelopes[0]!, job_type: 'scan-object', idempotency_key: 'not-a-result' };
  const failing = { ...envelopes[5]!, schema_version: 2 };
  await db.pool.query('delete from graphile_worker._private_jobs where id = any($1::bigint[])', [jobs.map((j) => j.id)]);
  await db.pool.query(`select graphile_worker.add_job('finalize-scan-object', $1::json, max_attempts := 5, priority := -20)`, [
    JSON.stringify([...envelopes.slice(0, 3), bad, ...envelopes.slice(3, 5), failing]),
  ]);

  const w = await workers(t, db.pool, { dsxaUrl: emu.url, roles: ['finalize'] });
  await waitFor(async () => (await getScan(db.pool, fullScanId)).finalized === 5, 'the valid envelopes finalized', 30_000, jobEvents(w));
  // graphile-worker counts an attempt when it locks a job: wait for the failure itself, written by its
  // batched failJob after job:complete (the local queue's next fetch re-checks too).
  await waitFor(async () => (await db.pool.query(`select 1 from graphile_worker._private_jobs where last_error is not null`)).rowCount === 1, 'the failure is recorded',
    30_000, jobEvents(w, 'job:complete', 'localQueue:getJobs:complete'));
  const left = await queuedJobs(db.pool, 'finalize-scan-object');
  t.equal(left.length, 1, 'one job is left for retry');
  t.same((left[0]!.payload as Envelope[]).map((e) => e.idempotency_key), [failing.idempotency_key], 'holding the failed envelope only');
  const { rows } = await db.pool.query('select last_error from graphile_worker._private_jobs where id = $1', [left[0]!.id]);
  t.match(rows[0].last_error, /schema_version 2, newer than this worker's 1/, 'with why');
  const { rows: invalid } = await db.pool.query('select task, error from dsx.invalid_jobs');
  t.match(invalid, [{ task: 'finalize-scan-object', error: /invalid finalize-scan-object payload: job_type/ }], 'the invalid envelope is recorded, naming the field, and not retried');
});
