/**
 * Eight of the nine job types are produced inside SQL, where no type checks them: every payload the SQL
 * producers emit is parsed here with the consumer's own schema (parseJob), after a real run of every
 * producer (start, begin, page, scan mark of both lanes, finalize decisions, event intake, debounced
 * ingest, the deferral of a scan of either lane while the scanner is unavailable). A payload of a newer schema version is retried,
 * not recorded as invalid.
 */
import t from 'tap';
import { parseJob, type TaskName } from '../src/jobs/envelope.ts';
import { createTestDatabase } from './helpers/db.ts';
import { emulator, fsScope, queuedJobs, Stepper, testConfig, waitFor, workers } from './helpers/pipeline.ts';
import { EICAR } from '../src/testing/fixtures.ts';

t.test('every payload every SQL producer emits parses with its consumer\'s schema', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  await db.pool.query(`select dsx.create_notification_channel('ops', 'https://hooks.example/dsx', 'webhook-secret')`);
  const scope = await fsScope(db.pool, {
    dir: t.testdir({ 'a.txt': 'a', 'b.com': EICAR, sub: { 'c.txt': 'c' } }),
    policy: { malicious: { remediation: 'move', notify: true }, clean: { tag: true } },
  });
  await db.pool.query('update dsx.scopes set monitor = true where id = $1', [scope.id]);
  const stepper = new Stepper(db.pool, { dsxaUrl: emu.url, config: testConfig({ monitorDebounceMs: 60_000, pageSize: 1 }) });
  const seen = new Map<TaskName, number>();
  const checked = new Set<string>();
  const check = async () => {
    for (const job of await queuedJobs(db.pool)) {
      if (checked.has(job.id)) continue;
      checked.add(job.id);
      const envelopes = Array.isArray(job.payload) ? job.payload : [job.payload];
      for (const p of envelopes) {
        parseJob(job.task as TaskName, p); // throws, naming the field, on any mismatch
        seen.set(job.task as TaskName, (seen.get(job.task as TaskName) ?? 0) + 1);
      }
    }
  };

  await db.pool.query(`select dsx.start_full_scan($1, 'test')`, [scope.id]);
  // Monitoring: two events of one object inside the debounce window: a scan now and a trailing ingest.
  for (const id of ['e1', 'e2']) {
    await db.pool.query(`select dsx.accept_monitor_events($1, 'generic', $2::jsonb)`, [
      scope.integration_id,
      JSON.stringify([{ external_id: id, event_type: 'modified', container: null, object_identity: 'a.txt', etag: null, size: 1, occurred_at: null }]),
    ]);
    await check();
    await stepper.drain('monitor-event-ingest');
  }
  const stages = ['full-scan-scope', 'enumerate-scope-page', 'scan-object', 'finalize-scan-object', 'monitor-scan-object', 'monitor-finalize-scan-object'] as const;
  for (let round = 0; round < 20 && (await queuedJobs(db.pool)).length > 0; round++) {
    await check();
    for (const task of stages) {
      await stepper.drain(task);
      await check();
    }
  }
  await check();
  // The deferral of a scan job while the scanner is unavailable, in each lane: it goes back under the
  // task it had. A second full scan and a third event give one queued scan job of each.
  await db.pool.query(`select dsx.start_full_scan($1, 'test')`, [scope.id]);
  for (const task of ['full-scan-scope', 'enumerate-scope-page'] as const) await stepper.drain(task);
  await db.pool.query(`select dsx.accept_monitor_events($1, 'generic', '[{"external_id": "e3", "event_type": "created", "object_identity": "sub/c.txt"}]'::jsonb)`, [scope.integration_id]);
  await stepper.drain('monitor-event-ingest');
  for (const task of ['scan-object', 'monitor-scan-object'] as const) {
    const [scan] = await queuedJobs(db.pool, task);
    t.ok(scan, `a queued ${task} job to defer`);
    await db.pool.query('delete from graphile_worker._private_jobs where id = $1', [scan!.id]);
    await db.pool.query(`select dsx_private.defer_scan_job($1::json, now(), 3)`, [JSON.stringify(scan!.payload)]);
    const again = (await queuedJobs(db.pool, task)).filter((j) => (j.payload as { job_id: string }).job_id === (scan!.payload as { job_id: string }).job_id);
    t.equal(again.length, 1, `the deferred ${task} job is queued again under ${task}`);
  }
  await check();
  t.same(
    [...seen.keys()].sort(),
    ['apply-remediation', 'enumerate-scope-page', 'finalize-scan-object', 'full-scan-scope', 'monitor-event-ingest', 'monitor-finalize-scan-object', 'monitor-scan-object', 'scan-object', 'send-notification'],
    `every job type produced and parsed (${[...seen.entries()].map(([k, n]) => `${k} ${n}`).join(', ')})`,
  );
});

t.test('a payload of a newer schema version is retried until an upgraded worker takes it, not recorded as invalid', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const payload = {
    schema_version: 2,
    job_type: 'full-scan-scope',
    job_id: '00000000-0000-4000-8000-000000000001',
    correlation_id: '00000000-0000-4000-8000-000000000001',
    root_job_id: '00000000-0000-4000-8000-000000000001',
    parent_job_id: null,
    idempotency_key: 'full-scan:1',
    source_type: 'full_scan',
    source_entity_id: '1',
    integration_id: 1,
    scope_id: 1,
    object_identity: null,
    requested_by: 'newer',
    created_at: new Date().toISOString(),
    body: { full_scan_id: 1, something_new: true },
  };
  const { rows } = await db.pool.query<{ id: string }>(`select (graphile_worker.add_job('full-scan-scope', $1::json)).id::text`, [JSON.stringify(payload)]);
  await workers(t, db.pool, { dsxaUrl: emu.url, roles: ['enumerate'] });
  await waitFor(async () => (await db.pool.query('select 1 from graphile_worker._private_jobs where id = $1 and last_error is not null', [rows[0]!.id])).rowCount === 1, 'the first attempt');
  const { rows: job } = await db.pool.query('select attempts, last_error from graphile_worker._private_jobs where id = $1', [rows[0]!.id]);
  t.match(job[0], { attempts: 1, last_error: /schema_version 2, newer than this worker's 1: it is retried until an upgraded worker takes it/ }, 'failed, to be retried');
  t.equal((await db.pool.query('select count(*)::int as n from dsx.invalid_jobs')).rows[0].n, 0, 'not recorded as invalid');
});

t.test('a value the database refuses (a NUL character) in a job is recorded as invalid; the worker goes on', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const scope = await fsScope(db.pool, { dir: t.testdir({ 'a.txt': 'a', 'b.txt': 'b' }) });
  const stepper = new Stepper(db.pool, { dsxaUrl: emu.url });
  await db.pool.query(`select dsx.start_full_scan($1, 'test')`, [scope.id]);
  for (const task of ['full-scan-scope', 'enumerate-scope-page', 'scan-object'] as const) await stepper.drain(task);
  const [batch] = await queuedJobs(db.pool, 'finalize-scan-object');
  const envelopes = batch!.payload as { body: { result: { response: Record<string, unknown> } } }[];
  // A forged envelope: the DSXA client never lets a NUL through (below), graphile-worker cannot store
  // one back, and the database refuses it in jsonb.
  envelopes[0]!.body.result.response = { ...envelopes[0]!.body.result.response, note: 'a\u0000b' };
  await db.pool.query('update graphile_worker._private_jobs set payload = $2::json where id = $1', [batch!.id, JSON.stringify(envelopes)]);
  await workers(t, db.pool, { dsxaUrl: emu.url, roles: ['finalize'] });
  await waitFor(async () => (await db.pool.query(`select 1 from dsx.invalid_jobs`)).rowCount === 1, 'the forged envelope to be recorded');
  await waitFor(async () => (await db.pool.query(`select 1 from dsx.scan_results where state = 'finalized'`)).rowCount === 1, 'the other envelope to be finalized');
  const { rows } = await db.pool.query('select task, error from dsx.invalid_jobs');
  t.match(rows, [{ task: 'finalize-scan-object', error: /the database refuses a value of it \(.*(u0000|Unicode)/ }]);
  t.equal((await queuedJobs(db.pool, 'finalize-scan-object')).length, 0, 'nothing left to retry: the worker did not crash on it');
});

t.test('a NUL character in a DSXA answer never reaches the database: the verdict is kept, the character replaced', async (t) => {
  const http = await import('node:http');
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{"scan_guid":"ab","verdict":"Benign","verdict_details":{"event_description":"ok\\u0000x","odd\\u0000key":"v"}}'));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const url = `http://127.0.0.1:${(server.address() as import('node:net').AddressInfo).port}`;
  const db = await createTestDatabase(t);
  const scope = await fsScope(db.pool, { dir: t.testdir({ 'a.txt': 'a' }) });
  const stepper = new Stepper(db.pool, { dsxaUrl: url });
  await db.pool.query(`select dsx.start_full_scan($1, 'test')`, [scope.id]);
  await stepper.runAll();
  const { rows } = await db.pool.query(`select outcome, raw_result->'verdict_details' as d from dsx.scan_results`);
  t.same(rows, [{ outcome: 'clean', d: { event_description: 'ok\uFFFDx', 'odd\uFFFDkey': 'v' } }]);
});
