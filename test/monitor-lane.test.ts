/**
 * The monitor lane: monitoring's ingest, scan and finalize jobs run under task names of their own
 * (monitor-event-ingest, monitor-scan-object, monitor-finalize-scan-object) in a graphile-worker runner
 * of their own, so they never wait behind full-scan jobs the pipeline lane has already fetched. Real
 * PostgreSQL, real workers, the DSXA emulator; full-scan jobs are held by a scan hook, and what ran
 * before what is read from graphile-worker's own events, not from timings.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import type pg from 'pg';
import { loadConfig } from '../src/config.ts';
import { integrationCreate, scopeCreate } from '../src/db/sql/catalog.ts';
import { fullScanStart } from '../src/db/sql/full-scans.ts';
import { DsxaClient } from '../src/dsxa/client.ts';
import type { Job, ScanTask } from '../src/jobs/envelope.ts';
import { log } from '../src/log.ts';
import { startWorker, type WorkerHandle } from '../src/worker/run.ts';
import { createTestDatabase } from './helpers/db.ts';
import { emulator, fsScope, queuedJobs, Stepper, testConfig, waitFor, waitForScan, waitForScanJobsGone, workers } from './helpers/pipeline.ts';
import { EICAR } from '../src/testing/fixtures.ts';

/** Every job a worker's runners completed, in the order graphile-worker reported them. */
function completions(w: WorkerHandle): { task: string; source: string }[] {
  const done: { task: string; source: string }[] = [];
  for (const runner of w.runners) {
    runner.events.on('job:complete', ({ job }) => {
      const p = job.payload as { source_type?: string } | { source_type?: string }[];
      done.push({ task: job.task_identifier, source: (Array.isArray(p) ? p[0]?.source_type : p.source_type) ?? '?' });
    });
  }
  return done;
}

/** Holds every scan job whose envelope matches `held` until `release()` (always released in teardown). */
function scanGate(t: Test, held: (job: Job<ScanTask>) => boolean) {
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  const entered: Job<ScanTask>[] = [];
  t.teardown(() => open());
  return {
    entered,
    release: () => open(),
    hooks: { scan: { started: (job: Job<ScanTask>) => (held(job) ? (entered.push(job), gate) : undefined) } },
  };
}

async function lockedJobs(pool: pg.Pool, task: string): Promise<number> {
  const { rows } = await pool.query(
    `select count(*)::int as n from graphile_worker._private_jobs j join graphile_worker._private_tasks k on k.id = j.task_id
      where k.identifier = $1 and j.locked_by is not null`,
    [task],
  );
  return rows[0].n;
}

/** Records storage events of `identities` as one intake request (one ingest job); returns their event ids. */
async function monitorEvents(pool: pg.Pool, integrationId: number, identities: string[]): Promise<number[]> {
  const events = identities.map((identity) => ({
    external_id: `${identity}:${crypto.randomUUID()}`, event_type: 'created', container: null, object_identity: identity, etag: null, size: null, occurred_at: null,
  }));
  const { rows } = await pool.query(`select dsx.accept_monitor_events($1, 'generic', $2::jsonb) -> 'event_ids' as ids`, [integrationId, JSON.stringify(events)]);
  return rows[0].ids;
}

async function monitorEvent(pool: pg.Pool, integrationId: number, identity: string): Promise<number> {
  return (await monitorEvents(pool, integrationId, [identity]))[0]!;
}

async function eventResult(pool: pg.Pool, eventId: number): Promise<{ state: string; outcome: string | null } | undefined> {
  const { rows } = await pool.query(
    `select r.state, r.outcome from dsx.monitor_events e join dsx.scan_results r on r.id = e.scan_result_id where e.id = $1`,
    [eventId],
  );
  return rows[0];
}

async function syntheticMonitoredScope(pool: pg.Pool, objects: number) {
  const integration = await integrationCreate(pool, { name: 'synth', kind: 'synthetic', settings: { objects, eicar_every: 0 } });
  const scope = await scopeCreate(pool, { integrationId: integration.id, name: 'synth', root: '', include: [], exclude: [], policy: {}, monitor: true });
  return { integration, scope };
}

t.test('with the pipeline lane running and holding full-scan scan jobs, a monitoring event is scanned and finalized before any of them', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const { integration, scope } = await syntheticMonitoredScope(db.pool, 50);
  const gate = scanGate(t, (job) => job.source_type === 'full_scan');
  // Pipeline concurrency 2: two scan jobs running (held) and a local queue of two more, fetched and locked.
  const w = await workers(t, db.pool, { dsxaUrl: emu.url, concurrency: 2, hooks: gate.hooks });
  const done = completions(w);
  t.same(w.lanes, ['pipeline', 'effects', 'monitor'], 'all roles: three lanes');
  const scan = await fullScanStart(db.pool, scope.id, 'test');
  await waitFor(async () => gate.entered.length === 2 && (await lockedJobs(db.pool, 'scan-object')) === 4, 'two held scans and two more in the local queue');

  const eventId = await monitorEvent(db.pool, integration.id, 'obj-000000050');
  await waitFor(async () => (await eventResult(db.pool, eventId))?.state === 'finalized', 'the monitored object to be finalized');

  t.same(await eventResult(db.pool, eventId), { state: 'finalized', outcome: 'clean' });
  t.same(
    done.map((d) => `${d.task} ${d.source}`),
    ['full-scan-scope full_scan', 'enumerate-scope-page full_scan', 'monitor-event-ingest monitor', 'monitor-scan-object monitor', 'monitor-finalize-scan-object monitor'],
    'the monitoring jobs ran in their lane, in order; no full-scan scan job has completed',
  );
  t.equal(gate.entered.length, 2, 'the full-scan scans are still held');
  t.equal(await lockedJobs(db.pool, 'scan-object'), 4, 'and the pipeline lane still holds the two it prefetched');

  gate.release();
  const finished = await waitForScan(db.pool, scan.fullScanId);
  t.match(finished, { status: 'completed', finalized: 50 }, 'the full scan completes once released');
  // The last scan job's row goes with graphile-worker's next completion batch, after the scan completed.
  await waitForScanJobsGone(db.pool, w, scan.fullScanId);
  const { rows } = await db.pool.query('select check_name, ok from dsx.verify_full_scan($1) where not ok', [scan.fullScanId]);
  t.same(rows, [], 'and verifies');
});

t.test('a worker with only the scan role scans monitoring objects; their finalize jobs wait in the monitor lane for a finalize worker', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const { integration } = await syntheticMonitoredScope(db.pool, 10);
  const eventId = await monitorEvent(db.pool, integration.id, 'obj-000000007');
  await new Stepper(db.pool, { dsxaUrl: emu.url }).drain('monitor-event-ingest');
  t.equal((await queuedJobs(db.pool, 'monitor-scan-object')).length, 1, 'the ingest queued a monitor-scan-object job');

  const scanner = await workers(t, db.pool, { dsxaUrl: emu.url, roles: ['scan'] });
  t.same(scanner.lanes, ['pipeline', 'monitor'], 'the scan role runs in the pipeline and the monitor lanes');
  await waitFor(async () => (await eventResult(db.pool, eventId))?.state === 'scanned', 'the object to be scanned');
  const finalizes = await queuedJobs(db.pool, 'monitor-finalize-scan-object');
  t.equal(finalizes.length, 1, 'its finalize job is queued in the monitor lane');
  t.match(finalizes[0]!.payload, [{ job_type: 'monitor-finalize-scan-object', source_type: 'monitor' }], 'as a batch job of monitor-lane envelopes');
  t.same(await queuedJobs(db.pool, 'finalize-scan-object'), [], 'and none in the pipeline lane');

  const finalizer = await workers(t, db.pool, { dsxaUrl: emu.url, roles: ['finalize'] });
  t.same(finalizer.lanes, ['pipeline', 'monitor']);
  await waitFor(async () => (await eventResult(db.pool, eventId))?.state === 'finalized', 'a finalize worker to finalize it');
  t.same(await eventResult(db.pool, eventId), { state: 'finalized', outcome: 'clean' });
});

t.test('monitoring jobs queued under the old names (before the monitor lane) still run, in the pipeline lane', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const { integration } = await syntheticMonitoredScope(db.pool, 10);
  const eventId = await monitorEvent(db.pool, integration.id, 'obj-000000003');
  await new Stepper(db.pool, { dsxaUrl: emu.url }).drain('monitor-event-ingest');
  const [job] = await queuedJobs(db.pool, 'monitor-scan-object');
  await db.pool.query('delete from graphile_worker._private_jobs where id = $1', [job!.id]);

  const w = await workers(t, db.pool, { dsxaUrl: emu.url });
  const done = completions(w);
  // What an older producer queued: the same envelope under the full-scan task name, priority -10.
  await db.pool.query(`select graphile_worker.add_job('scan-object', $1::json, max_attempts := 3, priority := -10)`, [
    JSON.stringify({ ...(job!.payload as object), job_type: 'scan-object' }),
  ]);
  await waitFor(async () => (await eventResult(db.pool, eventId))?.state === 'finalized', 'the old-style job to be finalized');
  t.same(await eventResult(db.pool, eventId), { state: 'finalized', outcome: 'clean' });
  await waitFor(async () => done.length === 2, 'both jobs to be reported complete');
  t.same(done, [{ task: 'scan-object', source: 'monitor' }, { task: 'finalize-scan-object', source: 'monitor' }], 'scanned and finalized under the old names');
});

t.test('DSX_MONITOR_CONCURRENCY is validated, and the monitor lane holds no more fetched jobs than it runs', async (t) => {
  t.equal(loadConfig({}).monitorConcurrency, 16, 'default 16');
  t.equal(loadConfig({ DSX_MONITOR_CONCURRENCY: '4' }).monitorConcurrency, 4);
  for (const bad of ['0', '-3', '2.5', 'lots', '1001']) {
    t.throws(() => loadConfig({ DSX_MONITOR_CONCURRENCY: bad }), /^invalid environment variable DSX_MONITOR_CONCURRENCY: /, `refuses ${JSON.stringify(bad)}`);
  }

  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const { integration } = await syntheticMonitoredScope(db.pool, 10);
  const gate = scanGate(t, () => true);
  await workers(t, db.pool, { dsxaUrl: emu.url, config: testConfig({ monitorConcurrency: 2 }), hooks: gate.hooks });
  // One request of six events: one ingest job, six scan jobs. Two scans run (held), two more wait in
  // the lane's local queue, two stay in the database.
  await monitorEvents(db.pool, integration.id, [1, 2, 3, 4, 5, 6].map((i) => `obj-00000000${i}`));
  await waitFor(async () => gate.entered.length === 2 && (await lockedJobs(db.pool, 'monitor-scan-object')) === 4, 'the lane to fill');
  t.equal(gate.entered.length, 2, 'two monitoring scans run at once');
  t.equal(await lockedJobs(db.pool, 'monitor-scan-object'), 4, 'two more are held by the lane, no more');
  t.equal((await queuedJobs(db.pool, 'monitor-scan-object')).length, 6, 'six scan jobs, two of them not fetched');
  gate.release();
  await waitFor(async () => (await db.pool.query(`select 1 from dsx.scan_results where state = 'finalized'`)).rowCount === 6, 'all six to be finalized');
});

t.test('with a poll interval of a minute, a monitored detection is scanned, finalized and remediated through notifications alone', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const files = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`eicar-${i + 1}.com`, EICAR]));
  const scope = await fsScope(db.pool, { dir: t.testdir(files), policy: { malicious: { remediation: 'tag', notify: false } } });
  await db.pool.query('update dsx.scopes set monitor = true where id = $1', [scope.id]);
  // Polls every 60 s: anything found within this test was found through LISTEN/NOTIFY, with no lost
  // notification in any lane (the effects lane used to miss a job inserted within 5-15 ms of an empty
  // fetch and wait for the next poll).
  const w = await startWorker({ pool: db.pool, config: testConfig(), log, roles: ['scan', 'finalize', 'remediate', 'notify', 'monitor'], concurrency: 4, dsxaUrl: emu.url, pollIntervalMs: 60_000 });
  t.teardown(() => w.stop());
  // Ten in a row: a notification missed within 5-15 ms of an empty fetch failed about one run in two with five.
  for (let i = 1; i <= 10; i++) {
    const eventId = await monitorEvent(db.pool, scope.integration_id, `eicar-${i}.com`);
    await waitFor(async () => (await eventResult(db.pool, eventId))?.state === 'finalized', `event ${i} to be finalized`, 20_000);
    await waitFor(
      async () => (await db.pool.query(`select 1 from dsx.side_effects where status not in ('pending', 'executing')`)).rowCount === i,
      `the remediation of event ${i} to be recorded`,
      20_000,
    );
  }
  const { rows } = await db.pool.query(`select action, status from dsx.side_effects order by id`);
  t.same(rows, Array(10).fill({ action: 'tag', status: 'not_supported' }), 'ten detections, ten remediations recorded (a folder has no tags)');
});

t.test('an urgent scan takes the scanner client\'s next free slot, ahead of scans that were waiting before it', async (t) => {
  const order: string[] = [];
  const pending: http.ServerResponse[] = [];
  let arrived!: () => void;
  let first = new Promise<void>((r) => (arrived = r));
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      order.push(String(req.headers['x-custom-metadata']));
      pending.push(res);
      arrived();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const client = new DsxaClient({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, maxInFlight: 1 });
  t.teardown(() => client.close());
  const answer = () => pending.shift()!.writeHead(200, { 'content-type': 'application/json' }).end('{"scan_guid":"ab","verdict":"Benign"}');

  const scans = [client.scanBinary(Buffer.from('a'), { metadata: 'first' })];
  await first;
  for (const name of ['full-1', 'full-2']) scans.push(client.scanBinary(Buffer.from('x'), { metadata: name }));
  scans.push(client.scanBinary(Buffer.from('m'), { metadata: 'monitor-1', urgent: true }));
  scans.push(client.scanBinary(Buffer.from('m'), { metadata: 'monitor-2', urgent: true }));
  t.equal(client.waiting, 4, 'four scans wait for the one slot');
  for (let i = 0; i < 4; i++) {
    first = new Promise<void>((r) => (arrived = r));
    answer();
    await first;
  }
  answer();
  await Promise.all(scans);
  t.same(order, ['first', 'monitor-1', 'monitor-2', 'full-1', 'full-2'], 'urgent scans first, each group in its own order');
});
