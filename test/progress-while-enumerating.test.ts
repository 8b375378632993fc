/**
 * Progress that does not pretend: while enumeration goes on the total is unknown, so the percentage
 * and the ETA are null (in dsx.full_scan_progress, `scan status --json`, GraphQL and the subscription)
 * and the text says "enumerating: N discovered so far"; once the last page is recorded both appear. A
 * scan canceled mid-enumeration says canceled, not enumerating. The scans are driven job by job
 * (Stepper) through the real task code, so "paused after the first page" is exact.
 */
import { spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import t from 'tap';
import { progressLine, progressView, type ProgressEvent } from '../src/cli/scan-progress.ts';
import { createTestDatabase } from './helpers/db.ts';
import { apiServer, operation, token, type GraphQLResult } from './helpers/graphql.ts';
import { emulator, queuedJobs, Stepper, syntheticScope, testConfig } from './helpers/pipeline.ts';
import { MAIN, productEnv } from './helpers/processes.ts';
import type pg from 'pg';

/** Runs `dsx-connect ...args` to completion without blocking this process. */
function cli(env: NodeJS.ProcessEnv, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, ...args], { env: productEnv({ DSX_LOG_LEVEL: 'warn', ...env }) });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout: stdout.trim(), stderr: stderr.trim() }));
  });
}

async function startScan(pool: pg.Pool, scopeId: number): Promise<number> {
  const { rows } = await pool.query<{ id: string }>(`select (dsx.start_full_scan($1, 'test')).full_scan_id as id`, [scopeId]);
  return Number(rows[0]!.id);
}

/** Runs (and completes) the first `n` queued jobs of `task`. */
async function runSome(stepper: Stepper, pool: pg.Pool, task: string, n: number): Promise<void> {
  for (const job of (await queuedJobs(pool, task)).slice(0, n)) {
    await stepper.run(job);
    await stepper.complete(job);
  }
}

async function progressRow(pool: pg.Pool, id: number) {
  const { rows } = await pool.query(
    `select status, discovered::int, finalized::int, enumeration_exhausted, percent_finalized::float8, eta_s::float8
       from dsx.full_scan_progress where id = $1`,
    [id],
  );
  return rows[0];
}

t.test('while enumeration goes on there is no percentage or ETA, only what was discovered so far; both come with the total', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const api = await apiServer(t, db.url);
  const viewer = await token('viewer');
  const scope = await syntheticScope(db.pool, { objects: 300, name: 'big' });
  // Pages of 100 after a first page of 50 (FIRST_PAGE_SIZE).
  const stepper = new Stepper(db.pool, { dsxaUrl: emu.url, config: testConfig({ pageSize: 100 }) });
  const id = await startScan(db.pool, scope.id);
  await stepper.drain('full-scan-scope');
  await runSome(stepper, db.pool, 'enumerate-scope-page', 1);
  await runSome(stepper, db.pool, 'scan-object', 10);
  await stepper.drain('finalize-scan-object');

  // 10 of the 50 listed so far: the old view said 20.0% with an ETA, of a scope six times larger.
  t.same(await progressRow(db.pool, id), {
    status: 'running', discovered: 50, finalized: 10, enumeration_exhausted: false, percent_finalized: null, eta_s: null,
  });
  const env = { DATABASE_URL: db.url };
  const [text, json] = await Promise.all([cli(env, 'scan', 'status', String(id)), cli(env, 'scan', 'status', String(id), '--json')]);
  t.equal(text.code, 0, text.stderr);
  t.match(text.stdout.split('\n')[1], /^ {2}finalized 10\/50, enumerating: 50 discovered so far(, [\d.]+ objects\/s)?$/);
  t.notMatch(text.stdout, /ETA|%/, 'no ETA and no percentage in the text');
  t.match(JSON.parse(json.stdout), { status: 'running', discovered: 50, finalized: 10, enumeration_exhausted: false, percent_finalized: null, eta_s: null });

  const q = await api.query(operation('full-scan-status'), { id: String(id) }, viewer);
  t.notOk(q.errors, JSON.stringify(q.errors));
  t.match(q.data.fullScanProgressByRowId, { enumerationExhausted: false, percentFinalized: null, etaS: null });

  let sawKnownTotal!: () => void;
  const knownTotal = new Promise<void>((r) => (sawKnownTotal = r));
  const sub = api.subscribe(operation('full-scan-progress'), { fullScanId: id }, viewer, (e: GraphQLResult) => {
    const p = e.data?.fullScanProgress as ProgressEvent | undefined;
    if (p?.status === 'running' && p.enumerationExhausted && Number(p.finalized) > 10) sawKnownTotal();
  });
  await sub.firstEvent;
  const initial = sub.events[0]!.data.fullScanProgress as ProgressEvent;
  t.match(initial, { event: 'initial', status: 'running', percentFinalized: null, etaS: null, enumerationExhausted: false });
  t.match(progressLine(initial), new RegExp(`^full scan ${id} running: 10/50 finalized, enumerating: 50 discovered so far, [\\d.-]+ objects/s, clean=10$`));

  // The rest of the scope is listed: now the total is known.
  while ((await queuedJobs(db.pool, 'enumerate-scope-page')).length > 0) await runSome(stepper, db.pool, 'enumerate-scope-page', 1);
  const known = await progressRow(db.pool, id);
  t.match(known, { status: 'running', discovered: 300, finalized: 10, enumeration_exhausted: true, percent_finalized: 3.3 });
  t.ok(known.eta_s !== null && known.eta_s >= 0, `an ETA once the total is known: ${known.eta_s} s`);
  const [text2, json2] = await Promise.all([cli(env, 'scan', 'status', String(id)), cli(env, 'scan', 'status', String(id), '--json')]);
  t.match(text2.stdout.split('\n')[1], /^ {2}finalized 10\/300 \(3\.3%\)(, [\d.]+ objects\/s)?, ETA \d+(s|m\d\ds|h\d\dm)$/);
  t.match(JSON.parse(json2.stdout), { enumeration_exhausted: true, percent_finalized: 3.3, eta_s: Number });

  // More objects finalized (past the 200 ms throttle: the two CLI runs took longer): an event shows it.
  await runSome(stepper, db.pool, 'scan-object', 10);
  await stepper.drain('finalize-scan-object');
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    knownTotal,
    new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('no progress event with the total within 30 s')), 30_000))),
  ]).finally(() => clearTimeout(timer));
  await db.pool.query(`select dsx.cancel_full_scan($1, 'interrupt', 'test')`, [id]);
  const events = (await sub.done).map((e) => {
    const p = e.data.fullScanProgress as ProgressEvent;
    return { ...p, discovered: Number(p.discovered), finalized: Number(p.finalized) };
  });
  for (const e of events.filter((e) => !e.enumerationExhausted)) {
    t.match(e, { percentFinalized: null, etaS: null }, `no percentage or ETA while ${e.discovered} were discovered so far`);
  }
  // The first finalize batch past the throttle notified; the event is read when it is emitted.
  const withTotal = events.find((e) => e.status === 'running' && e.enumerationExhausted && e.finalized > 10)!;
  const percent = Math.round((1000 * withTotal.finalized) / 300) / 10;
  t.match(withTotal, { discovered: 300, percentFinalized: percent, etaS: Number });
  t.match(progressLine(withTotal), new RegExp(`: ${withTotal.finalized}/300 \\(${percent.toFixed(1).replace('.', '\\.')}%\\), [\\d.-]+ objects/s, ETA \\d+`));
  const last = events.at(-1)!;
  t.match(last, { status: 'canceled', cancelMode: 'interrupt', etaS: null });
  t.notMatch(progressLine(last), /enumerating|ETA/, `the last line says canceled: ${progressLine(last)}`);
});

t.test('a scan canceled while enumerating says canceled, not enumerating', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const api = await apiServer(t, db.url);
  const scope = await syntheticScope(db.pool, { objects: 300, name: 'halted' });
  const stepper = new Stepper(db.pool, { dsxaUrl: emu.url, config: testConfig({ pageSize: 100 }) });
  const id = await startScan(db.pool, scope.id);
  await stepper.drain('full-scan-scope');
  await runSome(stepper, db.pool, 'enumerate-scope-page', 1);
  await runSome(stepper, db.pool, 'scan-object', 5);
  await stepper.drain('finalize-scan-object');
  // drain: the 45 queued scans still run, so the scan is canceled but not finished yet.
  await db.pool.query(`select dsx.cancel_full_scan($1, 'drain', 'test')`, [id]);
  t.same(await progressRow(db.pool, id), {
    status: 'canceled', discovered: 50, finalized: 5, enumeration_exhausted: false, percent_finalized: null, eta_s: null,
  });

  const env = { DATABASE_URL: db.url };
  const [text, json] = await Promise.all([cli(env, 'scan', 'status', String(id)), cli(env, 'scan', 'status', String(id), '--json')]);
  const lines = text.stdout.split('\n');
  t.equal(lines[0], `full scan ${id} of scope halted: canceled (drain)`);
  t.match(lines[1], /^ {2}finalized 5\/50(, [\d.]+ objects\/s)? \(enumeration stopped before the whole scope was listed\)$/);
  t.notMatch(text.stdout, /enumerating|ETA/, 'nothing says it is still enumerating');
  t.match(JSON.parse(json.stdout), { status: 'canceled', finished: false, percent_finalized: null, eta_s: null });

  const sub = api.subscribe(operation('full-scan-progress'), { fullScanId: id }, await token('viewer'));
  await sub.firstEvent;
  const initial = sub.events[0]!.data.fullScanProgress as ProgressEvent;
  t.match(progressLine(initial), new RegExp(`^full scan ${id} canceled: 5/50 finalized \\(enumeration stopped\\), `));
  await stepper.runAll();
  const last = (await sub.done).at(-1)!.data.fullScanProgress as ProgressEvent;
  t.match(last, { status: 'canceled', finalized: 50, percentFinalized: null });
  t.notMatch(progressLine(last), /enumerating/);
});

t.test('the line view shows a new enumeration warning at once, once, and counts skipped entries', async (t) => {
  const written: string[] = [];
  const stream = Object.assign(new Writable({ write: (c: Buffer, _e, done) => { written.push(String(c)); done(); } }), { isTTY: false });
  let clock = 0;
  const view = progressView(stream as unknown as NodeJS.WriteStream, { now: () => clock, intervalMs: 1000 });
  const base: ProgressEvent = {
    event: 'progress', fullScanId: 7, status: 'running', discovered: 120, finalized: 40, enumerationExhausted: false,
    percentFinalized: null, objectsPerS: 20, etaS: null, outcomes: { clean: 40 }, cancelMode: null, error: null,
    finishedAt: null, skipped: 0, enumerationWarning: null,
  };
  view.update(base);
  const warning = '1 directory could not be read: "locked" (EACCES) (not scanned)';
  clock = 100; // within the throttle: only the warning is new
  view.update({ ...base, discovered: 150, skipped: 1, enumerationWarning: warning });
  clock = 1200;
  view.update({ ...base, discovered: 300, finalized: 60, enumerationExhausted: true, percentFinalized: 20, etaS: 125, skipped: 1, enumerationWarning: warning });
  t.same(written, [
    'full scan 7 running: 40/120 finalized, enumerating: 120 discovered so far, 20 objects/s, clean=40\n',
    `full scan 7 warning: ${warning}\n`,
    'full scan 7 running: 60/300 (20.0%), 20 objects/s, ETA 2m05s, 1 skipped, clean=40\n',
  ]);
});
