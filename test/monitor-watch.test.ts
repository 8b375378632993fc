/**
 * Monitoring of a real folder: the `monitor` worker role's filesystem watcher, real files, real
 * workers and the DSXA emulator. Latency from write to finalized result, debouncing of rapid writes
 * (the last content is what is scanned), quarantine moves that do not loop, re-arming when scopes
 * change, when directories are renamed and when the scope root vanishes and comes back.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import type pg from 'pg';
import { EICAR_TEST_STRING } from '../src/connectors/eicar.ts';
import { integrationCreate, scopeCreate } from '../src/db/sql/catalog.ts';
import { scopeSetMonitor } from '../src/db/sql/monitor.ts';
import type { WorkerHandle } from '../src/worker/run.ts';
import { createTestDatabase } from './helpers/db.ts';
import { captureLogs } from './helpers/logs.ts';
import { emulator, testConfig, waitFor, workers } from './helpers/pipeline.ts';
import { jobEvents } from './helpers/wait.ts';

async function setup(t: Test, opts: { policy?: unknown; debounceMs?: number } = {}) {
  const db = await createTestDatabase(t);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-watch-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.mkdirSync(path.join(dir, 'inbox'));
  const integration = await integrationCreate(db.pool, { name: 'share', kind: 'filesystem', settings: { root: dir } });
  const scope = await scopeCreate(db.pool, {
    integrationId: integration.id, name: 'inbox', root: 'inbox', include: [], exclude: ['**/*.part'], policy: opts.policy ?? {}, monitor: true,
  });
  const emu = await emulator(t);
  // The default quarantine (<dataDir>/quarantine/<integration id>) is outside the share.
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-watch-data-'));
  t.teardown(() => fs.rmSync(dataDir, { recursive: true, force: true }));
  const logs = captureLogs();
  const w = await workers(t, db.pool, { dsxaUrl: emu.url, log: logs.log, config: testConfig({ dataDir, monitorSyncMs: 100, monitorDebounceMs: opts.debounceMs ?? 1000 }) });
  await settle(w.watcher!);
  return { db, dir, dataDir, integration, scope, watcher: w.watcher!, w, logs };
}

/**
 * Waits for a sync and for the watchers it opened to be ready: chokidar's 'ready' comes once every
 * directory's inotify watch is registered.
 */
async function settle(watcher: { sync(): Promise<void>; ready(): Promise<void> }) {
  await watcher.sync();
  await watcher.ready();
}

/** Every event the watcher recorded is ingested, and every scan it caused is finalized (re-checked as jobs complete). */
async function settled(pool: pg.Pool, w: WorkerHandle) {
  await waitFor(async () => {
    const { rows } = await pool.query(`select count(*)::int as n from dsx.monitor_events where status in ('received', 'deferred')`);
    const { rows: p } = await pool.query(`select count(*)::int as n from dsx.scan_results where state <> 'finalized'`);
    return rows[0].n === 0 && p[0].n === 0;
  }, 'everything settled', 30_000, jobEvents(w));
}

interface ResultRow {
  object_identity: string;
  outcome: string;
  source_type: string;
  finalized_at: Date;
}

async function results(pool: pg.Pool, identity: string): Promise<ResultRow[]> {
  const { rows } = await pool.query(
    `select object_identity, outcome, source_type, finalized_at from dsx.scan_results
      where object_identity = $1 and state = 'finalized' order by finalized_at, id`,
    [identity],
  );
  return rows as ResultRow[];
}

/** The first finalized result of `identity`, re-checked whenever a job of `w` completes. */
async function waitForResult(pool: pg.Pool, w: WorkerHandle, identity: string, timeoutMs = 10_000): Promise<ResultRow> {
  let row: ResultRow | undefined;
  await waitFor(async () => {
    [row] = await results(pool, identity);
    return !!row;
  }, `a result for ${identity}`, timeoutMs, jobEvents(w));
  return row!;
}

t.test('a file written into a monitored folder is finalized within 2 seconds; an EICAR file is detected', async (t) => {
  const { db, dir, w } = await setup(t);
  const written = Date.now();
  fs.writeFileSync(path.join(dir, 'inbox', 'report.txt'), 'quarterly numbers');
  const r = await waitForResult(db.pool, w, 'inbox/report.txt');
  const latency = r.finalized_at.getTime() - written;
  t.ok(latency < 2000, `finalized ${latency} ms after the write`);
  t.equal(r.source_type, 'monitor');
  t.equal(r.outcome, 'clean');

  fs.mkdirSync(path.join(dir, 'inbox', 'drop', 'deep'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'inbox', 'drop', 'deep', 'eicar.com'), EICAR_TEST_STRING);
  const m = await waitForResult(db.pool, w, 'inbox/drop/deep/eicar.com');
  t.equal(m.outcome, 'malicious', 'detected in a new subdirectory');

  // Excluded names and deletions are seen, recorded and not scanned.
  fs.writeFileSync(path.join(dir, 'inbox', 'upload.part'), 'partial');
  fs.unlinkSync(path.join(dir, 'inbox', 'report.txt'));
  await waitFor(async () => {
    const { rows } = await db.pool.query(`select count(*)::int as n from dsx.monitor_events where status = 'ignored'`);
    return rows[0].n >= 2;
  }, 'ignored events', 30_000, jobEvents(w));
  const { rows } = await db.pool.query(`select object_identity, reason from dsx.monitor_events where status = 'ignored' order by id`);
  t.same(rows, [
    { object_identity: 'inbox/upload.part', reason: 'excluded' },
    { object_identity: 'inbox/report.txt', reason: 'deleted' },
  ]);
  t.same(await results(db.pool, 'inbox/upload.part'), [], 'the excluded file is not scanned');
});

t.test('100 rapid writes to one file produce at most 2 scans, and the last content is scanned', async (t) => {
  const { db, dir, w } = await setup(t, { debounceMs: 2000 });
  const file = path.join(dir, 'inbox', 'busy.txt');
  // Clean content 99 times, then the EICAR string: only a scan of the last version finds it.
  for (let i = 0; i < 99; i++) fs.writeFileSync(file, `draft ${i}\n`);
  fs.writeFileSync(file, EICAR_TEST_STRING);
  await waitFor(async () => (await results(db.pool, 'inbox/busy.txt')).some((r) => r.outcome === 'malicious'), 'the last version scanned', 15_000, jobEvents(w));
  // A later file in the same directory: once its result is in, every event of busy.txt before it is
  // recorded; once everything recorded has settled, no trailing scan can follow.
  fs.writeFileSync(path.join(dir, 'inbox', 'barrier.txt'), 'after the writes');
  await waitForResult(db.pool, w, 'inbox/barrier.txt');
  await settled(db.pool, w);
  const all = await results(db.pool, 'inbox/busy.txt');
  t.ok(all.length >= 1 && all.length <= 2, `${all.length} scan(s) for 100 writes`);
  t.equal(all[all.length - 1]!.outcome, 'malicious', 'the latest result is of the last content');
  const { rows } = await db.pool.query(`select last_outcome from dsx.objects where identity = 'inbox/busy.txt'`);
  t.same(rows, [{ last_outcome: 'malicious' }], 'the object shows the last version');
});

t.test('a detection moved to quarantine (outside the share) is not scanned again', async (t) => {
  const { db, dir, dataDir, integration, w } = await setup(t, { policy: { malicious: { remediation: 'move', notify: false } } });
  fs.writeFileSync(path.join(dir, 'inbox', 'bad.com'), EICAR_TEST_STRING);
  await waitForResult(db.pool, w, 'inbox/bad.com');
  // `bad.com`, or `bad.com.dsx-<key hash>` when the decision passes its ledger key.
  const moved = path.join(dataDir, 'quarantine', String(integration.id), 'inbox');
  await waitFor(async () => fs.existsSync(moved) && fs.readdirSync(moved).some((n) => n.startsWith('bad.com')), 'the quarantine move', 30_000, jobEvents(w));
  // The move out of the share is seen as a deletion; once that event is ingested and all is settled,
  // whatever the move could trigger has happened.
  await waitFor(async () => (await db.pool.query(`select 1 from dsx.monitor_events where object_identity = 'inbox/bad.com' and reason = 'deleted'`)).rowCount === 1,
    'the removal from the share to be recorded', 30_000, jobEvents(w));
  await settled(db.pool, w);
  const { rows } = await db.pool.query(`select object_identity, outcome from dsx.scan_results order by id`);
  t.same(rows, [{ object_identity: 'inbox/bad.com', outcome: 'malicious' }], 'one scan: the quarantined copy and the removal trigger none');
});

t.test('the watcher re-arms: monitoring switched off and on, a new scope, a renamed directory, a root that vanishes', async (t) => {
  const { db, dir, integration, scope, watcher, w, logs } = await setup(t);

  await scopeSetMonitor(db.pool, scope.id, false);
  await settle(watcher); // the sync closes the scope's watcher
  fs.writeFileSync(path.join(dir, 'inbox', 'while-off.txt'), 'x');

  await scopeSetMonitor(db.pool, scope.id, true);
  await settle(watcher);
  fs.writeFileSync(path.join(dir, 'inbox', 'back-on.txt'), 'x');
  t.equal((await waitForResult(db.pool, w, 'inbox/back-on.txt')).source_type, 'monitor', 'watched again once switched back on');
  // Had the file written while off been seen, its event would be recorded before back-on.txt's.
  const { rows: none } = await db.pool.query(`select count(*)::int as n from dsx.monitor_events where object_identity = 'inbox/while-off.txt'`);
  t.equal(none[0].n, 0, 'no events while monitoring is off');

  fs.mkdirSync(path.join(dir, 'projects'));
  await scopeCreate(db.pool, { integrationId: integration.id, name: 'projects', root: 'projects', include: [], exclude: [], policy: {}, monitor: true });
  await settle(watcher);
  fs.writeFileSync(path.join(dir, 'projects', 'plan.txt'), 'x');
  await waitForResult(db.pool, w, 'projects/plan.txt');
  t.pass('a new monitored scope is watched');

  // A file in the new directory proves it is watched; after the rename, that file reported under the
  // new name proves the renamed directory is.
  fs.mkdirSync(path.join(dir, 'inbox', 'old-name'));
  fs.writeFileSync(path.join(dir, 'inbox', 'old-name', 'first.txt'), 'x');
  await waitForResult(db.pool, w, 'inbox/old-name/first.txt');
  fs.renameSync(path.join(dir, 'inbox', 'old-name'), path.join(dir, 'inbox', 'new-name'));
  await waitForResult(db.pool, w, 'inbox/new-name/first.txt');
  fs.writeFileSync(path.join(dir, 'inbox', 'new-name', 'inside.txt'), 'x');
  await waitForResult(db.pool, w, 'inbox/new-name/inside.txt');
  t.pass('a file in a renamed directory is seen');

  const vanished = logs.next('monitored scope root disappeared; re-arming when it is back', (l) => l.dir === path.join(dir, 'inbox'));
  fs.rmSync(path.join(dir, 'inbox'), { recursive: true });
  await vanished;
  fs.mkdirSync(path.join(dir, 'inbox'));
  await settle(watcher); // closes the broken watcher and arms a new one on the recreated root
  fs.writeFileSync(path.join(dir, 'inbox', 'after-recreate.txt'), EICAR_TEST_STRING);
  t.equal((await waitForResult(db.pool, w, 'inbox/after-recreate.txt')).outcome, 'malicious', 'the recreated root is watched again');
});
