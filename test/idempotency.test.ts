import t from 'tap';
import { fullScanStart } from '../src/db/sql/full-scans.ts';
import { createTestDatabase } from './helpers/db.ts';
import { emulator, fsScope, getScan, queuedJobs, Stepper, syntheticScope } from './helpers/pipeline.ts';

/** Everything redelivery could corrupt: counters, results, objects, the ledger, the audit trail. */
async function snapshot(pool: import('pg').Pool) {
  const q = async (sql: string) => (await pool.query(sql)).rows;
  return {
    scans: await q('select * from dsx.full_scans order by id'),
    results: await q('select id, idempotency_key, state, outcome, reason, attempts, finalized_at from dsx.scan_results order by id'),
    objects: await q('select scope_id, identity, last_outcome, last_scan_result_id, last_finalized_at from dsx.objects order by id'),
    effects: await q('select idempotency_key, status, executed_at from dsx.side_effects order by id'),
    audit: await q("select count(*)::int as n from dsx.audit_log where action <> 'job.invalid_payload'"),
  };
}

t.test('redelivery: the same scan job and the same finalize job run twice change nothing the second time', async (t) => {
  const db = await createTestDatabase(t);
  const dir = t.testdir({ 'clean.txt': 'hello', 'bad.com': 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*' });
  const emu = await emulator(t);
  const hook = await import('node:http');
  const received: string[] = [];
  const srv = hook.createServer((req, res) => {
    received.push(String(req.headers['x-dsx-idempotency-key']));
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
  const url = `http://127.0.0.1:${(srv.address() as import('node:net').AddressInfo).port}/hook`;
  await db.pool.query(`select dsx.create_notification_channel('hook', $1, 'secret-123')`, [url]);
  const scope = await fsScope(db.pool, { dir, policy: { malicious: { remediation: 'move', notify: true } } });
  const stepper = new Stepper(db.pool, { dsxaUrl: emu.url });
  const { fullScanId } = await fullScanStart(db.pool, scope.id, 'tester');

  // Enumeration: run the start job twice and the page job twice (a retry after its commit).
  const [startJob] = await queuedJobs(db.pool, 'full-scan-scope');
  await stepper.run(startJob!);
  await stepper.run(startJob!);
  await stepper.complete(startJob!);
  const [page] = await queuedJobs(db.pool, 'enumerate-scope-page');
  t.equal((await queuedJobs(db.pool, 'enumerate-scope-page')).length, 1, 'one first-page job');
  await stepper.run(page!);
  await stepper.run(page!);
  await stepper.complete(page!);
  t.equal((await getScan(db.pool, fullScanId)).discovered, 2, 'a page recorded twice counts once');
  t.equal((await queuedJobs(db.pool, 'scan-object')).length, 2);

  // Scan: each scan job delivered twice -> one finalize job each, one DSXA request each.
  for (const job of await queuedJobs(db.pool, 'scan-object')) {
    await stepper.run(job);
    await stepper.run(job);
    await stepper.complete(job);
  }
  t.equal(emu.stats().requests, 2, 'a scan job delivered twice scans once');
  const finalizeJobs = await queuedJobs(db.pool, 'finalize-scan-object');
  t.equal(finalizeJobs.length, 2, 'one finalize job per object');

  // Finalize: each twice.
  for (const job of finalizeJobs) {
    await stepper.run(job);
    const once = await snapshot(db.pool);
    await stepper.run(job);
    t.same(await snapshot(db.pool), once, 'a second finalize changes nothing');
    await stepper.complete(job);
  }
  const effectJobs = await queuedJobs(db.pool);
  t.same(effectJobs.map((j) => j.task).sort(), ['apply-remediation', 'send-notification']);

  // Side effects: each twice; the action happens and is recorded once.
  for (const job of effectJobs) {
    await stepper.run(job);
    await stepper.run(job);
    await stepper.complete(job);
  }
  t.equal(received.length, 1, 'the webhook is delivered once');
  const { rows: effects } = await db.pool.query('select kind, action, status from dsx.side_effects order by kind');
  t.same(effects, [
    { kind: 'notification', action: 'webhook', status: 'done' },
    { kind: 'remediation', action: 'move', status: 'done' },
  ]);
  const final = await getScan(db.pool, fullScanId);
  t.match(final, { status: 'completed', discovered: 2, finalized: 2, clean_count: 1, malicious_count: 1 });
  const { rows: audit } = await db.pool.query(`select action, count(*)::int as n from dsx.audit_log where action like '%.done' group by 1 order by 1`);
  t.same(audit, [{ action: 'notification.done', n: 1 }, { action: 'remediation.done', n: 1 }]);
});

t.test('an enumeration page that fails is retried from its cursor without duplicates', async (t) => {
  const db = await createTestDatabase(t);
  const scope = await syntheticScope(db.pool, { objects: 250, settings: { faults: { fail_first_lists: 1 } } });
  const emu = await emulator(t);
  const stepper = new Stepper(db.pool, { dsxaUrl: emu.url });
  const { fullScanId } = await fullScanStart(db.pool, scope.id, 'tester');
  await stepper.drain('full-scan-scope');
  const [page0] = await queuedJobs(db.pool, 'enumerate-scope-page');
  await t.rejects(stepper.run(page0!, { attempts: 1, maxAttempts: 10 }), /injected fault/, 'first listing fails and is retried');
  t.equal((await getScan(db.pool, fullScanId)).discovered, 0, 'a failed page records nothing');
  await stepper.run(page0!, { attempts: 2, maxAttempts: 10 });
  await stepper.complete(page0!);
  // Pages 1 and 2: page 1 is run twice (a retry after its commit).
  const [page1] = await queuedJobs(db.pool, 'enumerate-scope-page');
  await stepper.run(page1!);
  await stepper.run(page1!);
  await stepper.complete(page1!);
  await stepper.drain('enumerate-scope-page');
  const scan = await getScan(db.pool, fullScanId);
  t.match(scan, { discovered: 250, pages: 3, enumeration_exhausted: true });
  const { rows } = await db.pool.query('select count(*)::int as n, count(distinct object_identity)::int as d from dsx.scan_results');
  t.same(rows[0], { n: 250, d: 250 });
  t.equal((await queuedJobs(db.pool, 'scan-object')).length, 250);
  await stepper.runAll();
  t.match(await getScan(db.pool, fullScanId), { status: 'completed', finalized: 250 });
});

t.test('an enumeration that cannot go on fails the scan; objects already queued still finish', async (t) => {
  const db = await createTestDatabase(t);
  const dir = t.testdir({ a: { 'x.txt': 'x' } });
  const emu = await emulator(t);
  const scope = await fsScope(db.pool, { dir, root: 'missing' });
  const stepper = new Stepper(db.pool, { dsxaUrl: emu.url });
  const { fullScanId } = await fullScanStart(db.pool, scope.id, 'tester');
  await stepper.runAll();
  const scan = await getScan(db.pool, fullScanId);
  t.equal(scan.status, 'failed');
  t.match(scan.error, /enumeration of page 0 failed/);
  t.ok(scan.finished_at);
});

t.test('an invalid payload is recorded with a clear error and completed, changing nothing else', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const scope = await syntheticScope(db.pool, { objects: 3 });
  const stepper = new Stepper(db.pool, { dsxaUrl: emu.url });
  await fullScanStart(db.pool, scope.id, 'tester');
  const before = await snapshot(db.pool);
  const bad = [
    { task: 'full-scan-scope', payload: { hello: 'world' }, error: /invalid full-scan-scope payload: schema_version/ },
    { task: 'scan-object', payload: null, error: /invalid scan-object payload/ },
    { task: 'finalize-scan-object', payload: { schema_version: 1, job_type: 'scan-object' }, error: /job_type/ },
  ];
  const lastInvalid = async () => (await db.pool.query<{ task: string; error: string }>('select task, error from dsx.invalid_jobs order by id desc limit 1')).rows[0];
  for (const b of bad) {
    await stepper.run({ id: '0', task: b.task, payload: b.payload, attempts: 1, max_attempts: 5 });
    t.match(await lastInvalid(), { task: b.task, error: b.error }, `${b.task}: recorded with why`);
  }
  const [startJob] = await queuedJobs(db.pool, 'full-scan-scope');
  const tampered = { ...(startJob!.payload as object), body: { full_scan_id: 'not-a-number' } };
  await stepper.run({ ...startJob!, payload: tampered });
  t.match(await lastInvalid(), { task: 'full-scan-scope', error: /body.full_scan_id/ });
  t.same(await snapshot(db.pool), before, 'nothing else changed');
});
