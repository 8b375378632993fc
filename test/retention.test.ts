/**
 * Retention: what is older than its retention goes, in chunks, and everything the product still needs
 * stays (each object's latest result, results of a running scan, results with a side effect to execute,
 * events not handled, full scans, objects); a second sweep deletes nothing; the audit log stays
 * append-only for everyone but the sweep; graphile-worker's crontab runs the sweep once per slot however
 * many workers carry it; a chunk never waits on rows a running transaction holds; bad settings are
 * refused in one line.
 */
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import path from 'node:path';
import type pg from 'pg';
import t, { type Test } from 'tap';
import { loadConfig, PROJECT_DIR, type Config } from '../src/config.ts';
import { makePool } from '../src/db/connect.ts';
import { fullScanStart } from '../src/db/sql/full-scans.ts';
import { log } from '../src/log.ts';
import { RETENTION_CRON_IDENTIFIER } from '../src/retention/schedule.ts';
import { sweepRetention, type SweepReport } from '../src/retention/sweep.ts';
import { generateTree } from '../src/testing/tree.ts';
import { startWorker, type WorkerHandle } from '../src/worker/run.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { emulator, fsScope, queuedJobs, testConfig, waitFor, waitForScan, workers } from './helpers/pipeline.ts';

const BIN = path.join(PROJECT_DIR, 'bin', 'dsx-connect.js');
const RETENTION = loadConfig({}).retention;

function cli(env: NodeJS.ProcessEnv, ...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { env: { ...process.env, DSX_ENV_FILE: '/dev/null', DSX_LOG_LEVEL: 'warn', ...env }, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout.trim(), stderr: r.stderr.trim() };
}

async function ids(pool: pg.Pool, sql: string, params: unknown[] = []): Promise<number[]> {
  const { rows } = await pool.query<{ id: string }>(sql, params);
  return rows.map((r) => Number(r.id)).sort((a, b) => a - b);
}

async function count(pool: pg.Pool, sql: string, params: unknown[] = []): Promise<number> {
  const { rows } = await pool.query<{ n: string }>(sql, params);
  return Number(rows[0]!.n);
}

/** What the world holds, and what a sweep with the default retentions must delete of it. */
interface World {
  db: TestDatabase;
  scopeId: number;
  integrationId: number;
  /** Ids of rows that must go, per table. */
  doomed: Record<string, number[]>;
  /** Ids of rows of those tables that must stay. */
  kept: Record<string, number[]>;
  objects: number;
  fullScans: number;
  /** A scan_result whose monitor event (younger than the events' retention) outlives it. */
  eventOfDeletedResult: number;
}

/**
 * Two full scans of a real folder through the real pipeline (the first one's results superseded by the
 * second's, detections with a finished side effect each), aged 100 days; then rows of every other kind,
 * made directly (old and young, finished and not) in the order their ids would have in life.
 */
async function agedWorld(t: Test): Promise<World> {
  const db = await createTestDatabase(t);
  const { pool } = db;
  const doomed: Record<string, number[]> = {};
  const kept: Record<string, number[]> = {};
  // Audit entries from over a year ago come first: ids follow time.
  doomed.audit_log = await ids(
    pool,
    `insert into dsx.audit_log (at, actor, action) select now() - interval '400 days' + g * interval '1 minute', 'test', 'old.entry'
       from generate_series(1, 5) g returning id`,
  );

  const emu = await emulator(t);
  const dir = t.testdir();
  const tree = generateTree(path.join(dir, 'data'), { files: 12, eicar: 2 });
  // The default policy notifies of detections: with no channel each gets a finished ('skipped') side effect.
  const scope = await fsScope(pool, { dir, root: 'data' });
  await workers(t, pool, { dsxaUrl: emu.url, roles: ['enumerate', 'scan', 'finalize', 'remediate', 'notify'] });
  for (let i = 0; i < 2; i++) {
    const s = await fullScanStart(pool, scope.id, 'test');
    t.equal((await waitForScan(pool, s.fullScanId)).status, 'completed');
  }
  const [first, second] = await ids(pool, 'select id from dsx.full_scans order by id');
  await pool.query(
    `update dsx.scan_results set discovered_at = discovered_at - interval '100 days', scanned_at = scanned_at - interval '100 days',
            finalized_at = finalized_at - interval '100 days'`,
  );
  const integrationId = Number((await pool.query('select integration_id from dsx.scopes where id = $1', [scope.id])).rows[0].integration_id);
  // Skipped entries go with their scan once it finished longer ago than the results' retention.
  await pool.query(`update dsx.full_scans set finished_at = now() - interval '100 days' where id = $1`, [first]);
  const skipped = (scan: number) =>
    ids(pool, `insert into dsx.skipped_entries (full_scan_id, page_no, object_identity, reason) values ($1, 0, 'data/link', 'symlink') returning id`, [scan]);
  doomed.skipped_entries = await skipped(first!);
  kept.skipped_entries = await skipped(second!);

  // Scan 1's results are superseded: they go, with their side effects, but one whose side effect is
  // still pending (as if its webhook were still being retried).
  const firstResults = await ids(pool, 'select id from dsx.scan_results where full_scan_id = $1', [first]);
  const firstEffects = await ids(pool, 'select e.id from dsx.side_effects e join dsx.scan_results r on r.id = e.scan_result_id where r.full_scan_id = $1', [first]);
  t.equal(firstEffects.length, tree.eicar, 'each detection of scan 1 has a side effect');
  const pendingEffect = firstEffects[0]!;
  await pool.query(`update dsx.side_effects set status = 'pending' where id = $1`, [pendingEffect]);
  const pendingResult = Number((await pool.query('select scan_result_id from dsx.side_effects where id = $1', [pendingEffect])).rows[0].scan_result_id);
  doomed.scan_results = firstResults.filter((id) => id !== pendingResult);
  doomed.side_effects = firstEffects.filter((id) => id !== pendingEffect);
  // Scan 2's results are every object's latest: they stay, however old.
  kept.scan_results = [pendingResult, ...(await ids(pool, 'select id from dsx.scan_results where full_scan_id = $1', [second]))];
  kept.side_effects = [pendingEffect, ...(await ids(pool, 'select e.id from dsx.side_effects e join dsx.scan_results r on r.id = e.scan_result_id where r.full_scan_id = $1', [second]))];

  // A full scan still running, with an old finalized result (an object no other scan has seen).
  const running = Number(
    (await pool.query(`insert into dsx.full_scans (scope_id, status, requested_by, started_at, discovered) values ($1, 'running', 'test', now() - interval '100 days', 2) returning id`, [scope.id])).rows[0].id,
  );
  const resultRow = (key: string, fullScan: number | null, age: string, outcome = 'clean') =>
    ids(
      pool,
      `insert into dsx.scan_results (idempotency_key, full_scan_id, scope_id, integration_id, object_identity, source_type, source_entity_id,
                                     correlation_id, root_job_id, requested_by, state, outcome, discovered_at, finalized_at)
       values ($1, $2, $3, $4, $1, 'manual', 'test', gen_random_uuid(), gen_random_uuid(), 'test', 'finalized', $6,
               now() - $5::interval, now() - $5::interval) returning id`,
      [key, fullScan, scope.id, integrationId, age, outcome],
    );
  kept.scan_results.push(...(await resultRow('data/running-scan-object', running, '100 days')));
  // Young rows last: a result of yesterday (not an object's latest) stays, and ends the walk.
  kept.scan_results.push(...(await resultRow('data/yesterday', null, '1 day', 'canceled')));

  // Monitor events: two handled ones from three weeks ago go; one never handled stays however old; a
  // young handled one stays, pointing to a scan 1 result that goes (its link becomes null).
  const event = (status: string, reason: string | null, age: string, scanResult: number | null = null) =>
    ids(
      pool,
      `insert into dsx.monitor_events (integration_id, source, event_type, object_identity, status, reason, scope_id, scan_result_id, received_at, processed_at)
       values ($1, 'generic', 'modified', 'data/x', $2, $3, $4, $5, now() - $6::interval, now() - $6::interval) returning id`,
      [integrationId, status, reason, scope.id, scanResult, age],
    );
  doomed.monitor_events = [...(await event('ignored', 'monitoring_off', '21 days')), ...(await event('coalesced', 'superseded', '20 days'))];
  kept.monitor_events = await event('received', null, '30 days');
  const eventOfDeletedResult = doomed.scan_results[0]!;
  kept.monitor_events.push(...(await event('scanned', null, '2 days', eventOfDeletedResult)));

  // Debounce entries: idle for 20 days (goes), idle as long but waiting for a trailing scan, fresh.
  const debounce = (hash: string, age: string, deferred: number | null) =>
    pool.query(`insert into dsx_private.monitor_debounce (scope_id, identity_hash, last_scan_at, deferred_event_id) values ($1, $2, now() - $3::interval, $4)`, [scope.id, hash, age, deferred]);
  await debounce('idle', '20 days', null);
  await debounce('waiting', '20 days', kept.monitor_events[0]!);
  await debounce('fresh', '1 minute', null);

  // Replay signatures: one past its window, one within it.
  const signature = (expires: string) =>
    pool.query(`insert into dsx_private.event_signatures (integration_id, signature, signed_at, expires_at) values ($1, $2, now() - interval '10 minutes', now() + $3::interval)`, [
      integrationId,
      crypto.randomBytes(32),
      expires,
    ]);
  await signature('-5 minutes');
  await signature('5 minutes');

  // graphile-worker jobs: failed for good 40 days ago (goes), failed for good yesterday, still retrying.
  const job = async (attempts: number, maxAttempts: number, runAt: string) => {
    const [id] = await ids(pool, `select id from graphile_worker.add_job('no-such-task', '{}'::json, max_attempts := $1)`, [maxAttempts]);
    await pool.query(`update graphile_worker._private_jobs set attempts = $2, run_at = now() - $3::interval, last_error = 'test failure' where id = $1`, [id, attempts, runAt]);
    return [id!];
  };
  doomed.failed_jobs = await job(3, 3, '40 days');
  kept.failed_jobs = [...(await job(3, 3, '1 day')), ...(await job(1, 3, '40 days'))];

  const invalid = (age: string) => ids(pool, `insert into dsx.invalid_jobs (task, error, recorded_at) values ('scan-object', 'test', now() - $1::interval) returning id`, [age]);
  doomed.invalid_jobs = await invalid('31 days');
  kept.invalid_jobs = await invalid('29 days');

  return {
    db,
    scopeId: scope.id,
    integrationId,
    doomed,
    kept,
    objects: await count(pool, 'select count(*) as n from dsx.objects'),
    fullScans: await count(pool, 'select count(*) as n from dsx.full_scans'),
    eventOfDeletedResult,
  };
}

const TABLE_IDS: Record<string, string> = {
  scan_results: 'select id from dsx.scan_results',
  side_effects: 'select id from dsx.side_effects',
  skipped_entries: 'select id from dsx.skipped_entries',
  monitor_events: 'select id from dsx.monitor_events',
  invalid_jobs: 'select id from dsx.invalid_jobs',
  failed_jobs: 'select id from graphile_worker._private_jobs where last_error is not null',
};

t.test('a sweep deletes, in chunks, what is older than its retention, and keeps everything still needed', async (t) => {
  const world = await agedWorld(t);
  const { pool } = world.db;
  const allAudit = await count(pool, 'select count(*) as n from dsx.audit_log');
  const env = { DATABASE_URL: world.db.url };

  const before = cli(env, 'retention', '--json');
  t.equal(before.code, 0, before.stderr);
  const status = JSON.parse(before.stdout) as { schedule: string; last_sweep: unknown; tables: { table: string; retention_days: number | null; eligible_now: number | null }[] };
  t.equal(status.schedule, '0 * * * *', 'hourly by default');
  t.equal(status.last_sweep, null, 'never swept yet');
  const eligible = Object.fromEntries(status.tables.map((x) => [x.table, x.eligible_now]));
  t.same(
    eligible,
    {
      scan_results: world.doomed.scan_results!.length,
      side_effects: world.doomed.side_effects!.length,
      skipped_entries: 1,
      monitor_events: 2,
      monitor_debounce: 1,
      event_signatures: 1,
      audit_log: 5,
      failed_jobs: 1,
      invalid_jobs: 1,
    },
    '`retention --json` counts what a sweep would delete, per table',
  );
  t.same(Object.fromEntries(status.tables.map((x) => [x.table, x.retention_days])).audit_log, 365);

  const report = await sweepRetention(pool, RETENTION, log, { actor: 'test', chunkRows: 3 });
  t.equal(report.finished, true, 'every table reached its end');
  t.same(report.deleted, {
    monitor_events: 2,
    monitor_debounce: 1,
    event_signatures: 1,
    scan_results: world.doomed.scan_results!.length,
    side_effects: world.doomed.side_effects!.length,
    skipped_entries: 1,
    audit_log: 5,
    failed_jobs: 1,
    invalid_jobs: 1,
  });
  // 12 results of scan 1 but one, 3 per chunk: the walk over results alone takes several chunks.
  t.ok(report.chunks > 10, `deleted in chunks of 3 (${report.chunks} chunks)`);

  for (const [table, sql] of Object.entries(TABLE_IDS)) {
    t.ok(world.doomed[table]!.length > 0 && world.kept[table]!.length > 0, `${table}: the world has rows to delete and rows to keep`);
    const left = await ids(pool, sql);
    for (const id of world.doomed[table] ?? []) t.notOk(left.includes(id), `${table} ${id} was deleted`);
    t.same(left.filter((id) => (world.kept[table] ?? []).includes(id)), world.kept[table] ?? [], `${table}: every row to keep is still there`);
  }
  t.same(await ids(pool, `select id from dsx.audit_log where action = 'old.entry'`), [], 'the year-old audit entries are gone');
  t.equal(await count(pool, `select count(*) as n from dsx.audit_log where action <> 'retention.swept'`), allAudit - 5, 'every younger audit entry stays');
  t.same(
    (await pool.query('select identity_hash from dsx_private.monitor_debounce order by 1')).rows.map((r) => r.identity_hash),
    ['fresh', 'waiting'],
    'debounce entries: the idle one goes, the one waiting for a trailing scan and the fresh one stay',
  );
  t.equal(await count(pool, 'select count(*) as n from dsx_private.event_signatures'), 1, 'the signature within its replay window stays');
  t.equal(await count(pool, 'select count(*) as n from dsx.objects'), world.objects, 'dsx.objects is never swept');
  t.equal(await count(pool, 'select count(*) as n from dsx.full_scans'), world.fullScans, 'full-scan summaries are never swept');
  t.equal(
    await count(pool, 'select count(*) as n from dsx.objects o where not exists (select 1 from dsx.scan_results r where r.id = o.last_scan_result_id)'),
    0,
    'every object still has its latest result',
  );
  t.same(
    (await pool.query('select scan_result_id from dsx.monitor_events where id = $1', [world.kept.monitor_events![1]])).rows[0].scan_result_id,
    null,
    'a young event keeps its row; the link to its deleted result is cleared',
  );

  // The invariant checker of the swept scan counts the removed results instead of reporting a mismatch.
  const [scan1] = await ids(pool, 'select id from dsx.full_scans order by id limit 1');
  t.equal(await count(pool, `select results_removed as n from dsx.full_scans where id = ${scan1}`), world.doomed.scan_results!.length);
  const checks = (await pool.query<{ check_name: string; ok: boolean; detail: string }>('select * from dsx.verify_full_scan($1)', [scan1])).rows;
  t.same(checks.filter((c) => !c.ok), [], 'scan verify of a swept scan passes');
  t.match(checks.find((c) => c.check_name === 'discovered counter = result rows')?.detail, /removed by retention/);

  const again = await sweepRetention(pool, RETENTION, log, { actor: 'test', chunkRows: 3 });
  t.same(
    Object.values(again.deleted).filter((n) => n !== 0),
    [],
    'a second sweep deletes nothing',
  );
  const entries = (await pool.query(`select actor, detail from dsx.audit_log where action = 'retention.swept' order by id`)).rows;
  t.equal(entries.length, 2, 'one audit entry per sweep, not per row');
  t.match(entries[0], { actor: 'test', detail: { deleted: { scan_results: world.doomed.scan_results!.length, audit_log: 5 }, finished: true, retention_days: { results: 90, events: 14, audit: 365, jobs: 30 } } });

  const after = JSON.parse(cli(env, 'retention', '--json').stdout) as { last_sweep: { actor: string; finished: boolean }; tables: { table: string; eligible_now: number; last_deleted: number; last_swept_at: string }[] };
  t.match(after.last_sweep, { actor: 'test', finished: true }, 'the last sweep, from its audit entry');
  t.same(after.tables.map((x) => x.eligible_now).filter((n) => n !== 0), [], 'nothing is eligible any more');
  t.ok(after.tables.every((x) => x.last_deleted === 0 && x.last_swept_at), 'each table shows what the last sweep deleted and when');

  const swept = cli(env, 'retention', 'sweep');
  t.equal(swept.code, 0, swept.stderr);
  t.match(swept.stdout, /dsx\.scan_results: 0 deleted/);
  t.match(swept.stdout, /done in \d+ ms/);
  const human = cli(env, 'retention');
  t.match(human.stdout, /last sweep: \S+ by cli \S+, \d+ ms/, 'a sweep from the CLI is recorded under the session\'s actor');
  t.match(human.stdout, /dsx\.audit_log\s+365 days\s+0\s+0 at /);
});

t.test('a result becomes deletable once its object has a newer one, and a chunk never waits on rows a transaction holds', async (t) => {
  const world = await agedWorld(t);
  const { pool } = world.db;
  // The sweep's own connections give up on any lock wait after 1 s: a wait would fail the sweep.
  const sweepPool = makePool(world.db.url, 2);
  sweepPool.on('connect', (c) => void c.query(`set lock_timeout = '1s'`));
  t.teardown(() => sweepPool.end());

  // An object's latest (old) result, and a new pending result of the same object being finalized in an
  // open transaction: the finalize holds the new row, the object's row and its audit insert.
  const latest = (await pool.query(`select o.last_scan_result_id as id, o.identity from dsx.objects o where o.scope_id = $1 order by o.id limit 1`, [world.scopeId])).rows[0];
  await pool.query(
    `insert into dsx.scan_results (idempotency_key, full_scan_id, scope_id, integration_id, object_identity, source_type, source_entity_id, correlation_id, root_job_id, requested_by)
     values ('manual:rescan', null, $1, $2, $3, 'manual', 'test', gen_random_uuid(), gen_random_uuid(), 'test')`,
    [world.scopeId, world.integrationId, latest.identity],
  );
  const finalizing = await pool.connect();
  const heldResult = world.doomed.scan_results![1]!;
  const heldEffectResult = world.doomed.side_effects!.length > 0
    ? Number((await pool.query('select scan_result_id from dsx.side_effects where id = $1', [world.doomed.side_effects![0]])).rows[0].scan_result_id)
    : null;
  let report: SweepReport;
  try {
    await finalizing.query('begin');
    const done = await finalizing.query(`select status from dsx_private.finalize_results($1)`, [
      JSON.stringify([{ idempotency_key: 'manual:rescan', outcome: 'clean', reason: null, raw_result: { verdict: 'Benign' }, normalization_version: 1, attempts: 1 }]),
    ]);
    t.same(done.rows, [{ status: 'finalized' }], 'a finalize is under way, not committed');
    // Rows of the sweep's own table held by other work: a result row, and a side effect (as a claim does).
    await finalizing.query('select id from dsx.scan_results where id = $1 for update', [heldResult]);
    if (heldEffectResult) await finalizing.query('select id from dsx.side_effects where id = $1 for update', [world.doomed.side_effects![0]]);

    report = await sweepRetention(sweepPool, RETENTION, log, { actor: 'test', chunkRows: 3 });
    t.equal(report.finished, true, 'the sweep ran to its end without waiting on the open finalize');
    const left = await ids(pool, 'select id from dsx.scan_results');
    t.ok(left.includes(heldResult), 'the result another transaction holds is skipped');
    if (heldEffectResult) t.ok(left.includes(heldEffectResult), 'so is the result whose side effect another transaction holds');
    t.ok(left.includes(Number(latest.id)), 'the object still points to its old result until the finalize commits');
    t.equal(report.deleted.scan_results, world.doomed.scan_results!.length - (heldEffectResult && heldEffectResult !== heldResult ? 2 : 1));
    await finalizing.query('commit');
  } finally {
    finalizing.release();
  }
  t.not(Number((await pool.query('select last_scan_result_id from dsx.objects where identity = $1', [latest.identity])).rows[0].last_scan_result_id), Number(latest.id), 'the object moved on to its new result');

  const next = await sweepRetention(sweepPool, RETENTION, log, { actor: 'test', chunkRows: 3 });
  const left = await ids(pool, 'select id from dsx.scan_results');
  t.notOk(left.includes(heldResult), 'the next sweep deletes the row held before');
  t.notOk(left.includes(Number(latest.id)), 'and the old result its object no longer points to');
  t.equal(next.deleted.scan_results, heldEffectResult && heldEffectResult !== heldResult ? 3 : 2);

  // Two sweeps never run at once: while one holds the lock, another returns at once, doing nothing.
  const holder = await pool.connect();
  try {
    await holder.query(`select pg_advisory_lock(hashtextextended('dsx.retention.sweep', 0))`);
    const skipped = await sweepRetention(sweepPool, RETENTION, log, { actor: 'test' });
    t.same({ skipped: skipped.skipped, deleted: skipped.deleted }, { skipped: true, deleted: {} }, 'a sweep finding another one running skips');
    await holder.query(`select pg_advisory_unlock(hashtextextended('dsx.retention.sweep', 0))`);
  } finally {
    holder.release();
  }
});

t.test('the audit log refuses an operator\'s DELETE of any entry; only the sweep removes entries older than the retention', async (t) => {
  const db = await createTestDatabase(t);
  const { pool } = db;
  const [old] = await ids(pool, `insert into dsx.audit_log (at, actor, action) values (now() - interval '400 days', 'test', 'old.entry') returning id`);
  const [recent] = await ids(pool, `insert into dsx.audit_log (actor, action) values ('test', 'recent.entry') returning id`);
  await t.rejects(pool.query('delete from dsx.audit_log where id = $1', [old]), /append-only/, 'a plain DELETE of a year-old entry is refused');
  await t.rejects(pool.query(`update dsx.audit_log set actor = 'x' where id = $1`, [old]), /append-only/, 'so is an UPDATE');
  await t.rejects(pool.query('truncate dsx.audit_log'), /append-only/, 'and a TRUNCATE');
  const c = await pool.connect();
  try {
    // The floor set by hand, but less than a day ago: recent entries stay protected.
    await c.query('begin');
    const hourAgo = (await c.query(`select to_char((now() - interval '1 hour') at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as f`)).rows[0].f;
    await c.query(`select set_config('dsx.audit_retention_floor', $1, true)`, [hourAgo]);
    await t.rejects(c.query('delete from dsx.audit_log where id = $1', [recent]), /append-only/, 'a floor less than a day old lets nothing through');
    await c.query('rollback');
  } finally {
    c.release();
  }
  t.same((await pool.query('select * from dsx_private.retention_sweep_audit_log(365, 1000)')).rows, [{ deleted: 1, finished: true }], 'the sweep removes the year-old entry');
  t.same(await ids(pool, 'select id from dsx.audit_log where id = any($1)', [[old, recent]]), [recent!], 'and nothing younger');
  t.equal((await pool.query(`select current_setting('dsx.audit_retention_floor', true) as f`)).rows[0].f ?? '', '', 'the floor does not outlive the sweep');
  await t.rejects(pool.query('select * from dsx_private.retention_sweep_audit_log(0, 1000)'), /retention must be 1 day or more/, 'a retention under a day is refused');
  await t.rejects(pool.query('delete from dsx.audit_log where id = $1', [recent]), /append-only/, 'after a sweep a plain DELETE is still refused');
});

t.test('graphile-worker\'s crontab schedules the sweep once per slot, however many workers carry it', async (t) => {
  const db = await createTestDatabase(t);
  const { pool } = db;
  // Known since 150 s ago and never run: at start each worker backfills the slots of those minutes.
  await pool.query(`insert into graphile_worker._private_known_crontabs (identifier, known_since) values ($1, now() - interval '150 seconds')`, [RETENTION_CRON_IDENTIFIER]);
  // A payload the crontab never makes is recorded as invalid, not retried.
  await pool.query(`select graphile_worker.add_job('retention-sweep', '{"_cron": {"ts": "soon"}}'::json)`);
  const config: Config = testConfig({ retention: { ...RETENTION, schedule: '* * * * *' } });
  const started: WorkerHandle[] = [];
  t.teardown(() => Promise.all(started.splice(0).map((w) => w.stop())));
  started.push(
    ...(await Promise.all(
      [1, 2].map(() => startWorker({ pool, config, log, roles: ['maintain'], concurrency: 1, dsxaUrl: 'http://127.0.0.1:0', pollIntervalMs: 100 })),
    )),
  );
  await waitFor(
    async () =>
      (await count(pool, `select count(*) as n from dsx.audit_log where action = 'retention.swept'`)) > 0 &&
      (await queuedJobs(pool, 'retention-sweep')).length === 0,
    'a scheduled sweep',
  );
  await Promise.all(started.splice(0).map((w) => w.stop()));

  const sweeps = (await pool.query(`select actor, detail from dsx.audit_log where action = 'retention.swept' order by id`)).rows as { actor: string; detail: { slot: string; backfilled: boolean; finished: boolean } }[];
  t.ok(sweeps.length >= 1, `${sweeps.length} sweep(s) ran`);
  t.match(sweeps[0], { actor: 'dsx-connect', detail: { backfilled: true, finished: true } }, 'a missed slot is backfilled at start');
  const slots = sweeps.map((s) => s.detail.slot);
  t.same(slots, [...new Set(slots)], 'no slot was swept twice by the two workers');
  t.ok(slots.every((s) => new Date(s).getUTCSeconds() === 0), 'each sweep stands for a minute of the schedule');
  const known = (await pool.query('select last_execution from graphile_worker._private_known_crontabs where identifier = $1', [RETENTION_CRON_IDENTIFIER])).rows[0];
  t.ok(known.last_execution, 'graphile-worker recorded the last slot it scheduled');
  t.match(
    (await pool.query(`select task, error from dsx.invalid_jobs`)).rows,
    [{ task: 'retention-sweep', error: /_cron\.ts: must be an ISO-8601 timestamp/ }],
    'a malformed payload is recorded as an invalid job',
  );
});

t.test('retention settings are checked at start, each mistake refused in one line naming the variable', async (t) => {
  t.match(loadConfig({}).retention, { resultsDays: 90, eventsDays: 14, auditDays: 365, jobsDays: 30, schedule: '0 * * * *' }, 'the defaults');
  t.match(loadConfig({ DSX_RETENTION_AUDIT_DAYS: '0', DSX_RETENTION_SCHEDULE: '*/15 * * * *' }).retention, { auditDays: 0, schedule: '*/15 * * * *' }, '0 keeps forever; any cron expression');
  const refused: [string, string, RegExp][] = [
    ['DSX_RETENTION_RESULTS_DAYS', '-1', /DSX_RETENTION_RESULTS_DAYS: must be a whole number of days from 1 to 36500, or 0 to keep forever \(got "-1"\)/],
    ['DSX_RETENTION_EVENTS_DAYS', '1.5', /DSX_RETENTION_EVENTS_DAYS: .*got "1\.5"/],
    ['DSX_RETENTION_AUDIT_DAYS', '', /DSX_RETENTION_AUDIT_DAYS: .*got ""/],
    ['DSX_RETENTION_JOBS_DAYS', '90d', /DSX_RETENTION_JOBS_DAYS: .*got "90d"/],
    ['DSX_RETENTION_JOBS_DAYS', '36501', /DSX_RETENTION_JOBS_DAYS: .*from 1 to 36500/],
    ['DSX_RETENTION_SCHEDULE', 'hourly', /DSX_RETENTION_SCHEDULE: "hourly" is not a cron expression of 5 fields/],
    ['DSX_RETENTION_SCHEDULE', '0 25 * * *', /DSX_RETENTION_SCHEDULE: .*Too large value '25'/],
  ];
  for (const [name, value, message] of refused) {
    try {
      loadConfig({ [name]: value });
      t.fail(`${name}=${JSON.stringify(value)} was accepted`);
    } catch (err) {
      t.match((err as Error).message, message, `${name}=${JSON.stringify(value)} is refused`);
      t.notOk((err as Error).message.includes('\n'), 'in one line');
    }
  }
  const r = cli({ DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none', DSX_RETENTION_RESULTS_DAYS: 'ninety' }, 'retention');
  t.equal(r.code, 1, 'the command exits 1');
  t.match(r.stderr, /^error: invalid environment variable DSX_RETENTION_RESULTS_DAYS: .*\(got "ninety"\)$/, 'with one line, before touching any database');
});
