/**
 * Scale-out, shown: the roles (enumerate, scan, finalize, side effects with housekeeping, monitor) as five
 * separate `dsx-connect worker --roles X` processes against one database. A synthetic full scan, a file dropped
 * into a monitored folder, and the detections' remediation and notifications all complete with exact
 * counts; each process runs its own role's tasks and no other (its debug log names every task it ran,
 * its heartbeat names its roles); the scan process SIGKILLed mid-scan and replaced by a new one loses
 * and repeats nothing.
 */
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { EICAR_TEST_STRING } from '../src/connectors/eicar.ts';
import { channelCreate, integrationCreate, scopeCreate } from '../src/db/sql/catalog.ts';
import { fullScanStart, fullScanVerify } from '../src/db/sql/full-scans.ts';
import { RETENTION_CRON_IDENTIFIER } from '../src/retention/schedule.ts';
import { createTestDatabase } from './helpers/db.ts';
import { emulator, getScan, syntheticScope, waitFor } from './helpers/pipeline.ts';
import { MAIN, productEnv, start, type Running } from './helpers/processes.ts';
import { startReceiver } from './helpers/webhook-receiver.ts';

const OBJECTS = 3000;
/** The synthetic connector puts the EICAR string into every 1000th object. */
const DETECTIONS = OBJECTS / 1000;

/** Tasks a worker process ran, by name, from its debug log (`<task> done`, one line per job or envelope). */
function tasksRun(p: Running): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const m of p.stdout().matchAll(/"msg":"([a-z-]+) done"/g)) counts[m[1]!] = (counts[m[1]!] ?? 0) + 1;
  return counts;
}

/** Whether every task a process ran belongs to its role (the monitor lane's tasks end the same way). */
function onlyTasks(counts: Record<string, number>, allowed: RegExp): string[] {
  return Object.keys(counts).filter((task) => !allowed.test(task));
}

t.test('five role processes share one database: a full scan, a monitored folder and side effects complete exactly, each process doing its own part, and a killed scan process is replaced without loss', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const receiver = (await startReceiver(t))!;
  const base = t.testdir({ share: { inbox: {} }, data: {} });
  const share = path.join(base, 'share');
  const dataDir = path.join(base, 'data');
  fs.chmodSync(dataDir, 0o700);

  await channelCreate(db.pool, { name: 'ops', url: `http://127.0.0.1:${receiver.port}/hook`, secret: 'a-long-enough-secret' });
  // The synthetic store is read-only: its detections are notified (the default policy), not moved.
  const synthetic = await syntheticScope(db.pool, { objects: OBJECTS });
  const integration = await integrationCreate(db.pool, { name: 'share', kind: 'filesystem', settings: { root: share } });
  await scopeCreate(db.pool, {
    integrationId: integration.id,
    name: 'inbox',
    root: 'inbox',
    include: [],
    // Probe files (below) and files still being written are not scanned.
    exclude: ['**/*.part'],
    policy: { malicious: { remediation: 'move', notify: true } },
    monitor: true,
  });

  const env = productEnv({
    DATABASE_URL: db.url,
    DSXA_URL: emu.url,
    DSX_DATA_DIR: dataDir,
    DSX_LOG_LEVEL: 'debug',
    DSX_PAGE_SIZE: '250',
    DSX_WORKER_CONCURRENCY: '32',
    DSX_WORKER_HEARTBEAT_MS: '250',
    DSX_WORKER_DEAD_AFTER_MS: '1500',
    DSX_MONITOR_SYNC_MS: '200',
    DSX_WEBHOOK_ALLOW_PRIVATE: 'true',
  });
  const worker = (roles: string, concurrency: number) =>
    start(t, process.execPath, [MAIN, 'worker', '--roles', roles, '--concurrency', String(concurrency)], { env });
  const roles: Record<string, string> = { enumerate: 'enumerate', scan: 'scan', finalize: 'finalize', effects: 'remediate,notify,maintain', monitor: 'monitor' };
  const procs = {
    enumerate: worker(roles.enumerate!, 4),
    scan: worker(roles.scan!, 32),
    finalize: worker(roles.finalize!, 32),
    effects: worker(roles.effects!, 4),
    monitor: worker(roles.monitor!, 4),
  };
  await Promise.all(Object.values(procs).map((p) => p.waitForStdout(/"msg":"worker running"/)));

  // Each process's heartbeat (written just after its pool starts) names its roles.
  const heartbeatRoles = async (pid: number) =>
    (await db.pool.query<{ roles: string[] }>('select roles from dsx_private.worker_heartbeats where pid = $1', [pid])).rows.flatMap((r) => r.roles);
  for (const [name, p] of Object.entries(procs)) {
    await waitFor(async () => (await heartbeatRoles(p.pid)).length > 0, `the ${name} process's heartbeat`);
    t.same([...new Set(await heartbeatRoles(p.pid))].sort(), roles[name]!.split(',').sort(), `the ${name} process's heartbeat names its roles`);
  }

  // The maintain role (here beside the side effects) put the retention sweep on graphile-worker's crontab.
  const crontabs = async () => (await db.pool.query<{ identifier: string }>('select identifier from graphile_worker._private_known_crontabs')).rows.map((r) => r.identifier);
  await waitFor(async () => (await crontabs()).length > 0, 'the retention sweep on the crontab');
  t.same(await crontabs(), [RETENTION_CRON_IDENTIFIER], 'the maintain role scheduled the retention sweep, once');

  // The watcher says "watching" before inotify is armed, and another process cannot ask it when it is:
  // write probes (excluded from scanning) until one is recorded as an event.
  await procs.monitor.waitForStdout(/"msg":"watching"/);
  for (let i = 0; ; i++) {
    fs.writeFileSync(path.join(share, 'inbox', `probe-${i}.part`), 'probe');
    const seen = waitFor(
      async () => (await db.pool.query(`select 1 from dsx.monitor_events where object_identity like 'inbox/probe-%'`)).rowCount! > 0,
      'a probe event',
      1000,
    );
    if (await seen.then(() => true, () => false)) break;
    if (i === 20) throw new Error('the watcher recorded no event in 20 s');
  }

  const { fullScanId } = await fullScanStart(db.pool, synthetic.id, 'tester');
  // A detection dropped into the monitored folder while the full scan runs (written whole, then renamed).
  const part = path.join(share, 'inbox', 'dropped.com.part');
  fs.writeFileSync(part, EICAR_TEST_STRING);
  fs.renameSync(part, path.join(share, 'inbox', 'dropped.com'));

  // Mid-scan, the scan process dies without a chance to return its jobs; a new one takes over once the
  // survivors' heartbeat sweep (DSX_WORKER_DEAD_AFTER_MS, 1.5 s) releases what the dead one held.
  // It is killed while it holds scan jobs (running or in its local queue): at least 10, more than it
  // could finish in the millisecond between the check and the kill.
  const killed = procs.scan;
  const held = async () =>
    (
      await db.pool.query<{ id: string }>(
        `select j.id::text from graphile_worker._private_jobs j
          where j.locked_by in (select worker_id from dsx_private.worker_heartbeats where pid = $1)`,
        [killed.pid],
      )
    ).rows.map((r) => r.id);
  await waitFor(async () => (await getScan(db.pool, fullScanId)).finalized >= OBJECTS / 4 && (await held()).length >= 10, 'a quarter of the scan, with scan jobs held', 30_000);
  killed.proc.kill('SIGKILL');
  const { signal } = await killed.exited();
  t.equal(signal, 'SIGKILL', 'the first scan process was killed mid-scan');
  const orphans = await held();
  const atKill = await getScan(db.pool, fullScanId);
  t.ok(orphans.length > 0 && atKill.finalized < OBJECTS, `it died holding ${orphans.length} jobs, with ${atKill.finalized} of ${OBJECTS} objects finalized`);
  const replacement = worker('scan', 32);
  await replacement.waitForStdout(/"msg":"worker running"/);

  await waitFor(async () => !!(await getScan(db.pool, fullScanId)).finished_at, 'the full scan to finish', 45_000);
  const sideEffectsSettled = async () => {
    const { rows } = await db.pool.query(`select count(*) filter (where status in ('pending', 'executing'))::int as open, count(*)::int as n from dsx.side_effects`);
    return rows[0].n === DETECTIONS + 2 && rows[0].open === 0;
  };
  await waitFor(sideEffectsSettled, 'every remediation and notification to be recorded', 20_000);
  await waitFor(async () => (await db.pool.query('select 1 from graphile_worker._private_jobs')).rowCount === 0, 'the queue to empty', 20_000);
  // The jobs the dead process held were released by the survivors' sweep and run by the replacement
  // (a job leaves the table only when it completes).
  const { rows: left } = await db.pool.query('select id from graphile_worker._private_jobs where id = any($1::bigint[])', [orphans]);
  t.same(left, [], `the ${orphans.length} jobs the killed process held ran to completion after all`);

  // The full scan: exact counts, and every invariant of the checker.
  const scan = await getScan(db.pool, fullScanId);
  t.match(scan, { status: 'completed', discovered: OBJECTS, finalized: OBJECTS, clean_count: OBJECTS - DETECTIONS, malicious_count: DETECTIONS });
  const { rows: results } = await db.pool.query(
    `select count(*)::int as n, count(distinct object_identity)::int as objects, count(*) filter (where state = 'finalized')::int as finalized
       from dsx.scan_results where full_scan_id = $1`,
    [fullScanId],
  );
  t.same(results[0], { n: OBJECTS, objects: OBJECTS, finalized: OBJECTS }, 'one finalized result per object, none twice');
  for (const c of await fullScanVerify(db.pool, fullScanId)) t.ok(c.ok, `${c.check_name}: ${c.detail}`);

  // The monitored folder: one scan of the dropped file, its move and its notification; probes ignored.
  const { rows: monitored } = await db.pool.query(
    `select object_identity, outcome, source_type from dsx.scan_results where full_scan_id is null order by id`,
  );
  t.same(monitored, [{ object_identity: 'inbox/dropped.com', outcome: 'malicious', source_type: 'monitor' }], 'the dropped file was scanned once');
  // A .part file renamed away may also be seen deleted (the watcher's timing): ignored either way.
  const { rows: probes } = await db.pool.query(
    `select distinct status, reason from dsx.monitor_events where object_identity like 'inbox/%.part' order by reason`,
  );
  t.ok(probes.some((p) => p.reason === 'excluded'), 'probe and partial files were recorded');
  t.ok(probes.every((p) => p.status === 'ignored' && ['excluded', 'deleted'].includes(p.reason)), `and not scanned: ${JSON.stringify(probes)}`);
  t.notOk(fs.existsSync(path.join(share, 'inbox', 'dropped.com')), 'the detection left the share');
  const quarantined = path.join(dataDir, 'quarantine', String(integration.id), 'inbox');
  t.ok(fs.readdirSync(quarantined).some((n) => n.startsWith('dropped.com')), 'and is in the quarantine');

  // Side effects: the move and DETECTIONS + 1 notifications, each done once and delivered once.
  const { rows: effects } = await db.pool.query(`select kind, action, status, count(*)::int as n from dsx.side_effects group by 1, 2, 3 order by 1, 2, 3`);
  t.same(effects, [
    { kind: 'notification', action: 'webhook', status: 'done', n: DETECTIONS + 1 },
    { kind: 'remediation', action: 'move', status: 'done', n: 1 },
  ]);
  t.equal(receiver.requests.length, DETECTIONS + 1, 'one webhook delivery per detection');
  t.equal(new Set(receiver.requests.map((r) => r.headers['x-dsx-idempotency-key'])).size, DETECTIONS + 1, 'each with its own idempotency key');

  // Each process ran its own role's tasks and nothing else; both scan processes scanned.
  const ran = Object.fromEntries([...Object.entries(procs), ['replacement', replacement] as const].map(([name, p]) => [name, tasksRun(p)]));
  t.same(onlyTasks(ran.enumerate!, /^(full-scan-scope|enumerate-scope-page)$/), [], 'the enumerate process only listed');
  t.equal(ran.enumerate!['full-scan-scope'], 1);
  t.ok((ran.enumerate!['enumerate-scope-page'] ?? 0) >= OBJECTS / 250, `it recorded every page (${ran.enumerate!['enumerate-scope-page']} page jobs)`);
  for (const [name, label] of [['scan', 'killed'], ['replacement', 'replacement']] as const) {
    t.same(onlyTasks(ran[name]!, /scan-object$/), [], `the ${label} scan process only scanned`);
    t.ok((ran[name]!['scan-object'] ?? 0) > 0, `the ${label} scan process scanned (${ran[name]!['scan-object']} jobs)`);
  }
  // How many jobs the two ran in all is not checked here: the killed process's last log lines die
  // with it (SIGKILL, asynchronous logging), so its count is only a lower bound (one CI run logged 753
  // of them, 2,994 in all for 3,001 objects). That every object was scanned and finalized exactly once
  // is what the results and the invariant checks above prove.
  t.same(onlyTasks(ran.finalize!, /finalize-scan-object$/), [], 'the finalize process only finalized');
  t.ok((ran.finalize!['finalize-scan-object'] ?? 0) >= OBJECTS, 'and finalized every object');
  // A sweep runs only if the test crosses the top of the hour (DSX_RETENTION_SCHEDULE), and then here.
  const { 'retention-sweep': sweeps = 0, ...effectTasks } = ran.effects!;
  t.ok(sweeps <= 1, `the effects process swept at most once (${sweeps})`);
  t.same(effectTasks, { 'apply-remediation': 1, 'send-notification': DETECTIONS + 1 }, 'the effects process ran each side effect once');
  t.same(onlyTasks(ran.monitor!, /^monitor-event-ingest$/), [], 'the monitor process only ingested events');
  t.ok((ran.monitor!['monitor-event-ingest'] ?? 0) >= 1, 'and ingested the folder events');
});
