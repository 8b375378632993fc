/**
 * A scanner outage is not a verdict. With DSXA stopped mid-scan (the emulator process gone, its port
 * closed) for longer than all the retries of a scan job, no object is finalized as unable_to_scan or
 * timeout: scan jobs wait without using up their attempts, `scan status`, /readyz and the progress view
 * say "scanner unavailable since ...", and the scan resumes and completes with exact counts when DSXA
 * answers again. A scanner that fails every request, or refuses the token, is the same; a worker started
 * against a DSXA that is not there says so at start.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import t from 'tap';
import { PROJECT_DIR } from '../src/config.ts';
import { startEmulator } from '../src/dsxa/emulator.ts';
import { freePort } from '../src/testing/ports.ts';
import { generateTree } from '../src/testing/tree.ts';
import { createTestDatabase } from './helpers/db.ts';
import { apiServer } from './helpers/graphql.ts';
import { emulator, fsScope, getScan, testConfig, waitFor, waitForEmptyQueue, waitForFinalized, waitForScan, waitForScanJobsGone, workers } from './helpers/pipeline.ts';
import { notifications } from './helpers/wait.ts';

const BIN = path.join(PROJECT_DIR, 'bin', 'dsx-connect.js');

function cli(env: NodeJS.ProcessEnv, ...args: string[]): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, DSX_LOG_LEVEL: 'warn', ...env } });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.on('close', (code) => resolve({ code, stdout }));
  });
}

async function start(pool: import('pg').Pool, scopeId: number): Promise<number> {
  const { rows } = await pool.query<{ id: string }>(`select (dsx.start_full_scan($1, 'test')).full_scan_id as id`, [scopeId]);
  return Number(rows[0]!.id);
}

async function verdictless(pool: import('pg').Pool): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(`select count(*)::int as n from dsx.scan_results where outcome in ('unable_to_scan', 'timeout')`);
  return rows[0]!.n;
}

t.test('DSXA stopped mid-scan for longer than all retries: nothing finalized meanwhile, the scan resumes and completes exactly', async (t) => {
  const db = await createTestDatabase(t);
  const port = await freePort();
  let emu = await startEmulator({ port, latencyMs: 5 });
  t.teardown(() => emu.close());
  const dir = t.testdir();
  const tree = generateTree(path.join(dir, 'data'), { files: 400, eicar: 4, encrypted: false });
  const scope = await fsScope(db.pool, { dir, root: 'data' });
  // Short retries: a scan job would use up all its attempts in a few seconds without the outage rule.
  const config = testConfig({ scanMaxAttempts: 2, dsxaTimeoutMs: 1000 });
  const w = await workers(t, db.pool, { dsxaUrl: emu.url, config, concurrency: 16 });
  const api = await apiServer(t, db.url, { mode: 'open' });
  const id = await start(db.pool, scope.id);
  await waitForFinalized(db.pool, id, 40);

  await emu.close(); // the scanner goes away: connections refused
  const downAt = Date.now();
  // A change of the scanner's state is announced to every running scan on 'dsx_full_scan'.
  await waitFor(async () => (await db.pool.query(`select 1 from dsx.scanner_status where state = 'unavailable'`)).rowCount! > 0, 'the outage to be seen', 30_000,
    notifications(db.pool, 'dsx_full_scan'));
  // Objects that got their verdict before the outage are still being finalized: once only deferred
  // scan jobs are left, nothing can be finalized without the scanner.
  await waitForEmptyQueue(db.pool, w, 30_000, (j) => j.task === 'scan-object' && !j.locked);
  const during = await getScan(db.pool, id);
  t.ok(during.finalized < tree.files, `interrupted at ${during.finalized} of ${tree.files}`);

  const status = await cli({ DATABASE_URL: db.url }, 'scan', 'status', String(id));
  t.match(status.stdout, /scanner unavailable since \d{4}-\d\d-\d\dT[^:]+:\d\d:\d\d\.\d+Z: scans wait until it answers \(.*(ECONNREFUSED|ECONNRESET)/, 'scan status says so');
  const ready = (await (await fetch(`${api.url}/readyz`)).json()) as { status: string; scanner: { state: string; message: string } };
  t.match(ready, { status: 'ready', scanner: { state: 'unavailable', message: /^scanner unavailable since / } }, '/readyz says so');
  const { rows: view } = await db.pool.query('select scanner_state, scanner_since is not null as since from dsx.full_scan_progress where id = $1', [id]);
  t.same(view, [{ scanner_state: 'unavailable', since: true }], 'and the progress view (the subscription reads it)');

  // Longer than every retry of a scan job (2 attempts, ~2.7 s of graphile-worker backoff, in-process
  // tries, 1 s timeouts): elapsed time is what is under test here.
  await new Promise((r) => setTimeout(r, Math.max(0, 12_000 - (Date.now() - downAt))));
  t.equal(await verdictless(db.pool), 0, 'no object was finalized as unable_to_scan or timeout during the outage');
  t.equal((await getScan(db.pool, id)).finalized, during.finalized, 'nothing was finalized at all while DSXA was gone');
  const { rows: later } = await db.pool.query('select eta_s, scanner_error from dsx.full_scan_progress where id = $1', [id]);
  t.equal(later[0].eta_s, null, 'no ETA while nothing can progress');
  // Probes at ~2 s and ~6 s into the outage found the port closed: the reason shown is theirs, not that
  // of the requests cut off when the scanner went away.
  t.match(later[0].scanner_error, /ECONNREFUSED/, 'the reason shown is the latest probe\'s');

  emu = await startEmulator({ port, latencyMs: 5 }); // back, on the same address
  const done = await waitForScan(db.pool, id, 120_000);
  t.match(done, { status: 'completed', discovered: tree.files, finalized: tree.files, clean_count: tree.files - tree.eicar, malicious_count: tree.eicar });
  t.equal(await verdictless(db.pool), 0, 'no verdict came from the outage');
  await waitForScanJobsGone(db.pool, w, id);
  const { rows: checks } = await db.pool.query<{ ok: boolean }>('select ok from dsx.verify_full_scan($1)', [id]);
  t.ok(checks.every((c) => c.ok), 'every invariant holds');
  const { rows: audit } = await db.pool.query(`select action from dsx.audit_log where action like 'scanner.%' order by id`);
  t.same(audit.map((a) => a.action).filter((a, i, all) => all.indexOf(a) === i), ['scanner.unavailable', 'scanner.ok'], 'the outage and the recovery are in the audit log');
});

t.test('a scanner that fails every request, or refuses the token, is unavailable, not a verdict', async (t) => {
  for (const [what, opts, state] of [
    ['5xx on every scan', { failRate: 1, faultKinds: ['503'] as const }, 'unavailable'],
    ['a token it refuses', { token: 'the-right-token' }, 'unauthorized'],
  ] as const) {
    await t.test(what, async (t) => {
      const db = await createTestDatabase(t);
      const emu = await emulator(t, opts);
      const dir = t.testdir(Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`f${i}.txt`, `file ${i}`])));
      const scope = await fsScope(db.pool, { dir });
      await workers(t, db.pool, { dsxaUrl: emu.url, config: testConfig({ scanMaxAttempts: 2, dsxaTimeoutMs: 500 }) });
      const id = await start(db.pool, scope.id);
      await waitFor(async () => (await db.pool.query(`select 1 from dsx.scanner_status where state = $1`, [state])).rowCount! > 0, `the scanner ${state}`, 30_000,
        notifications(db.pool, 'dsx_full_scan'));
      t.equal(await verdictless(db.pool), 0, 'no object finalized without a verdict');
      emu.setOptions({ failRate: 0, token: null });
      const done = await waitForScan(db.pool, id, 60_000);
      t.match(done, { status: 'completed', clean_count: 12 }, 'every object scanned once it answers');
      t.equal(await verdictless(db.pool), 0);
    });
  }
});

t.test('a worker started with a DSXA_URL nothing answers says so at start', async (t) => {
  const db = await createTestDatabase(t);
  const url = `http://127.0.0.1:${await freePort()}`;
  const child = spawn(process.execPath, [BIN, 'worker', '--roles', 'scan'], {
    env: { ...process.env, DATABASE_URL: db.url, DSXA_URL: url, DSX_LOG_LEVEL: 'info' },
  });
  let out = '';
  const said = new Promise<void>((resolve) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d;
      if (out.includes('scans wait until it answers')) resolve();
    });
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  t.teardown(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    await exited;
  });
  await said;
  t.match(out, new RegExp(`DSXA at ${url.replace(/[.:/]/g, '\\$&')} is unavailable: scans wait until it answers \\(.*ECONNREFUSED`), 'one line that names the URL and why');
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'and it keeps running until told to stop');
});
