/**
 * How dsx-connect processes stop, with real processes: the bin/dsx-connect.js wrapper under the
 * machine's older Node, Ctrl-C of `npm start` during a scan (its embedded PostgreSQL stopped last), a
 * second Ctrl-C that forces the exit, and `worker` and `server` on SIGTERM.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { REPEAT_WINDOW_MS } from '../src/cli/signals.ts';
import { loadConfig, PROJECT_DIR } from '../src/config.ts';
import { openDatabase } from '../src/db/connect.ts';
import { integrationCreate, scopeCreate } from '../src/db/sql/catalog.ts';
import { fullScanStart } from '../src/db/sql/full-scans.ts';
import { createTestDatabase } from './helpers/db.ts';
import { emulator, waitFor, waitForFinalized } from './helpers/pipeline.ts';
import { within } from './helpers/wait.ts';
import {
  BIN, childPids, commandLine, dataDir, descendants, freeFixedPort, isRunning, logLinesAtLeast, MAIN, portOpen, printedPort, processesWith, productEnv, start, systemNode,
} from './helpers/processes.ts';

const sys = systemNode();
const sysEnv = (extra: NodeJS.ProcessEnv = {}) => productEnv({ PATH: sys.pathEnv, DSX_LOG_LEVEL: 'warn', ...extra });
const [sysMajor, sysMinor] = execFileSync(sys.path, ['--version'], { env: sysEnv(), encoding: 'utf8' }).trim().replace(/^v/, '').split('.').map(Number) as [number, number];
const rerun = sysMajor < 22 || (sysMajor === 22 && sysMinor < 18);

/** The wrapper's real process: its re-run child when it re-ran itself, else the wrapper itself. */
function realProcess(wrapperPid: number): number {
  if (!rerun) return wrapperPid;
  const kids = childPids(wrapperPid);
  if (kids.length !== 1) throw new Error(`expected one child of the wrapper, found ${kids.join(', ') || 'none'}`);
  return kids[0]!;
}

t.test('bin/dsx-connect.js forwards SIGTERM to the process it re-runs under Node 24: both end, exit 0, port free', async (t) => {
  t.comment(`machine Node: ${sys.path} ${sysMajor}.${sysMinor} (${rerun ? 're-runs itself' : 'runs directly'})`);
  const wrapper = start(t, sys.path, [BIN, 'dsxa-emulator', '--port', '0'], { env: sysEnv() });
  const port = printedPort(await wrapper.waitForStdout(/DSXA emulator listening/));
  const real = realProcess(wrapper.pid);
  if (rerun) t.match(commandLine(real), /node_modules\/\.bin\/node .*src\/cli\/main\.ts dsxa-emulator/, 'the child is the project Node running main.ts');
  t.ok(await portOpen(port), 'the emulator listens');

  wrapper.proc.kill('SIGTERM');
  t.same(await wrapper.exited(15_000), { code: 0, signal: null }, 'the wrapper exits with the child\'s code');
  t.notOk(isRunning(real), 'the real process is gone');
  t.notOk(await portOpen(port), 'and its port is free');
});

t.test('when the re-run process dies of a signal, the wrapper dies of the same signal', async (t) => {
  const wrapper = start(t, sys.path, [BIN, 'dsxa-emulator', '--port', '0'], { env: sysEnv() });
  await wrapper.waitForStdout(/DSXA emulator listening/);
  const real = realProcess(wrapper.pid);
  process.kill(real, 'SIGKILL');
  t.same(await wrapper.exited(15_000), { code: null, signal: 'SIGKILL' });
});

t.test('Ctrl-C reaches the wrapper and its child at once: one graceful stop, exit 0, not a forced one', async (t) => {
  // Its own process group, as a terminal's foreground job: a signal to the group is what Ctrl-C sends.
  const wrapper = start(t, sys.path, [BIN, 'dsxa-emulator', '--port', '0'], { env: sysEnv(), detached: true });
  const port = printedPort(await wrapper.waitForStdout(/DSXA emulator listening/));
  const real = realProcess(wrapper.pid);
  process.kill(-wrapper.pid, 'SIGINT');
  t.same(await wrapper.exited(15_000), { code: 0, signal: null }, 'the forwarded copy of the SIGINT did not count as a second Ctrl-C');
  t.notOk(isRunning(real));
  t.notOk(await portOpen(port));
});

/** One embedded-database product instance, shared by the tests below (its cluster is initialised once). */
const shared = { dir: dataDir(t), pgPort: await freeFixedPort() };

function embeddedEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return productEnv({ DSX_DATA_DIR: shared.dir, DSX_EMBEDDED_PG_PORT: String(shared.pgPort), DSX_LOG_LEVEL: 'info', ...extra });
}

/** Asserts that the embedded PostgreSQL of `dir` stopped: its port closed, its postmaster gone, postmaster.pid removed. */
async function assertDatabaseStopped(t: Test, dir: string, port: number) {
  // The server is a grandchild of this process: no exit event reaches us, so its port is polled.
  await waitFor(async () => !(await portOpen(port)), 'the embedded PostgreSQL to stop', 15_000);
  t.same(processesWith(path.join(dir, 'pg')), [], 'no postgres process of the data directory is left');
  t.notOk(fs.existsSync(path.join(dir, 'pg', 'postmaster.pid')), 'postmaster.pid is gone: a clean shutdown');
}

/** stderr without the open-API banner of `dev`: what is left must be empty. */
/** stderr without the open-API banner and the one-line notice of a newly created embedded database. */
function unexpectedStderr(text: string): string {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.startsWith('!!') && !l.startsWith('dsx-connect: created the embedded PostgreSQL'))
    .join('\n');
}

t.test('Ctrl-C of `npm start` during a scan stops the workers and the API, then the database, cleanly', async (t) => {
  const env = embeddedEnv({ PORT: '0' });
  const npm = start(t, 'npm', ['start'], { cwd: PROJECT_DIR, env, detached: true });
  await npm.waitForStdout(/DSX-Connect is running/, 120_000);

  // A scan big enough to be in full flight when Ctrl-C comes.
  const config = loadConfig(env);
  const db = await openDatabase(config, { migrate: false, poolSize: 2 });
  t.equal(db.embedded?.owned, false, 'the test reaches the server npm start runs');
  const integ = await integrationCreate(db.pool, { name: 'load', kind: 'synthetic', settings: { objects: 50_000 } });
  const scope = await scopeCreate(db.pool, { integrationId: integ.id, name: 'load', root: '', include: [], exclude: [], policy: {}, monitor: false });
  const { fullScanId } = await fullScanStart(db.pool, scope.id, 'test');
  await waitForFinalized(db.pool, fullScanId, 1);
  await db.close();

  const devPids = descendants(npm.pid).filter((p) => /^\S*node src\/cli\/main\.ts dev/.test(commandLine(p)));
  t.equal(devPids.length, 1, 'one dev process under npm (npm -> sh -> node)');
  const devPid = devPids[0]!;
  const t0 = Date.now();
  process.kill(-npm.pid, 'SIGINT');
  const exit = await npm.exited(60_000);
  t.comment(`stopped in ${Date.now() - t0} ms`);
  // npm runs the script through `sh -c`: sh got the Ctrl-C too and dies of it once dev has exited, and
  // npm reports that; a script that execs node leaves npm with dev's own exit code.
  const script = (JSON.parse(fs.readFileSync(path.join(PROJECT_DIR, 'package.json'), 'utf8')) as { scripts: { start: string } }).scripts.start;
  t.same(exit, script.startsWith('exec ') ? { code: 0, signal: null } : { code: null, signal: 'SIGINT' }, `npm start ends as a Ctrl-C'd script does (${script})`);
  t.notOk(isRunning(devPid), 'the dev process is gone');
  t.same(logLinesAtLeast(npm.stdout(), 50), [], 'no error-level log lines');
  t.match(npm.stdout(), /shutting down: the API and the workers first, the database last[\s\S]*"msg":"stopped"/);
  t.equal(unexpectedStderr(npm.stderr()), '', 'nothing on stderr but the open-API banner: no stack trace');
  await assertDatabaseStopped(t, shared.dir, shared.pgPort);

  // The stop handed every job back: none is left locked for the dead-worker sweep to find.
  const after = await openDatabase(config, { migrate: false, poolSize: 1 });
  t.teardown(() => after.close());
  const { rows } = await after.pool.query('select count(*)::int as locked from graphile_worker.jobs where locked_at is not null');
  t.equal(rows[0].locked, 0, 'no job is left locked');
  const scan = await after.pool.query('select status, finalized::int as n from dsx.full_scans where id = $1', [fullScanId]);
  t.equal(scan.rows[0].status, 'running', 'the scan is left running, to resume at the next start');
});

t.test('npm forwards SIGTERM to dev when the script execs it (as the start script should): exit 0, database stopped', async (t) => {
  const env = embeddedEnv({ PORT: '0' });
  const npm = start(t, 'npm', ['exec', '-c', 'exec node src/cli/main.ts dev'], { cwd: PROJECT_DIR, env, detached: true });
  await npm.waitForStdout(/DSX-Connect is running/, 120_000);
  const kids = childPids(npm.pid);
  t.equal(kids.length, 1);
  const devPid = kids[0]!;
  t.match(commandLine(devPid), /node src\/cli\/main\.ts dev/, 'npm\'s child is dev itself');
  npm.proc.kill('SIGTERM');
  t.same(await npm.exited(60_000), { code: 0, signal: null }, 'npm exits with dev\'s code');
  t.notOk(isRunning(devPid));
  t.same(logLinesAtLeast(npm.stdout(), 50), [], 'no error-level log lines');
  t.notMatch(npm.stderr(), /\n\s+at /, 'no stack trace');
  await assertDatabaseStopped(t, shared.dir, shared.pgPort);
});

t.test('a second Ctrl-C a second after the first exits at once, and still stops the embedded database', async (t) => {
  // A scanner that never answers in time: the graceful stop waits for the scans in flight.
  // faultOn is asked as each scan request arrives, just before it takes its capacity slot.
  let arrived!: () => void;
  const inFlight = new Promise<void>((resolve) => (arrived = resolve));
  const emu = await emulator(t, { latencyMs: 120_000, faultOn: () => (setImmediate(arrived), null) });
  const env = embeddedEnv({ PORT: '0', DSXA_URL: emu.url });
  const dev = start(t, process.execPath, [MAIN, 'dev'], { env });
  await dev.waitForStdout(/DSX-Connect is running/, 120_000);
  const config = loadConfig(env);
  const db = await openDatabase(config, { migrate: false, poolSize: 1 });
  const { rows } = await db.pool.query("select id from dsx.scopes where name = 'demo'");
  await fullScanStart(db.pool, Number(rows[0].id), 'test');
  await db.close();
  await within(inFlight, 60_000, 'scans in flight at the scanner');
  t.ok(emu.stats().inFlight > 0, 'scans are in flight at the scanner');

  dev.proc.kill('SIGINT');
  dev.proc.kill('SIGINT'); // the same Ctrl-C delivered twice (terminal and a forwarding parent)
  await dev.waitForStdout(/shutting down/);
  // Elapsed time is what is under test: a repeat within REPEAT_WINDOW_MS is not a second Ctrl-C.
  await new Promise((r) => setTimeout(r, REPEAT_WINDOW_MS + 100));
  t.ok(isRunning(dev.pid), 'still stopping gracefully: the duplicate did not force the exit');
  const t0 = Date.now();
  dev.proc.kill('SIGINT');
  t.same(await dev.exited(10_000), { code: 130, signal: null }, 'the second Ctrl-C exits at once with 130');
  t.ok(Date.now() - t0 < 5000, `in ${Date.now() - t0} ms`);
  t.match(dev.stderr(), /SIGINT again: exiting now/);
  await assertDatabaseStopped(t, shared.dir, shared.pgPort);
});

t.test('`worker` with an embedded database it started stops on SIGTERM: exit 0, database stopped', async (t) => {
  const env = embeddedEnv();
  const worker = start(t, process.execPath, [MAIN, 'worker', '--roles', 'enumerate,finalize', '--concurrency', '4'], { env });
  await worker.waitForStdout(/"msg":"worker running"/, 120_000);
  worker.proc.kill('SIGTERM');
  t.same(await worker.exited(30_000), { code: 0, signal: null });
  t.same(logLinesAtLeast(worker.stdout(), 50), [], 'no error-level log lines');
  t.match(worker.stdout(), /"msg":"worker stopped"/);
  t.equal(worker.stderr(), '');
  await assertDatabaseStopped(t, shared.dir, shared.pgPort);
});

t.test('`server` stops on SIGTERM with a client connected: exit 0, port free', async (t) => {
  const db = await createTestDatabase(t);
  const server = start(t, process.execPath, [MAIN, 'server', '--port', '0'], { env: productEnv({ DATABASE_URL: db.url, DSX_LOG_LEVEL: 'info' }) });
  const port = printedPort(await server.waitForStdout(/GraphQL API: http/, 60_000));
  // A keep-alive connection left open must not hold the stop.
  const res = await fetch(`http://127.0.0.1:${port}/healthz`);
  t.equal(res.status, 200);
  server.proc.kill('SIGTERM');
  t.same(await server.exited(30_000), { code: 0, signal: null });
  t.same(logLinesAtLeast(server.stdout(), 50), [], 'no error-level log lines');
  t.match(server.stdout(), /"msg":"API server stopped"/);
  t.notOk(await portOpen(port));
});

t.test('a command run while nothing serves the embedded database starts it for its duration, says so, and stops it', async (t) => {
  const r = start(t, process.execPath, [MAIN, 'scope', 'list', '--json'], { env: embeddedEnv({ DSX_LOG_LEVEL: 'warn' }) });
  t.same(await r.exited(60_000), { code: 0, signal: null }, r.stderr());
  t.match(JSON.parse(r.stdout()), [{ name: 'demo' }, { name: 'load' }], 'the scopes of that data directory');
  t.equal(
    r.stderr().trim(),
    `note: nothing was listening on 127.0.0.1:${shared.pgPort}, so this command started the embedded PostgreSQL of ${shared.dir} for its duration`,
    'it says which database it started, so a mismatch with a running instance shows',
  );
  await assertDatabaseStopped(t, shared.dir, shared.pgPort);
});

t.test('Ctrl-C of a command waiting on the database interrupts it: exit 130, no error printed', async (t) => {
  const db = await createTestDatabase(t);
  const integ = await integrationCreate(db.pool, { name: 'idle', kind: 'synthetic', settings: { objects: 10 } });
  const scope = await scopeCreate(db.pool, { integrationId: integ.id, name: 'idle', root: '', include: [], exclude: [], policy: {}, monitor: false });
  const { fullScanId } = await fullScanStart(db.pool, scope.id, 'test');
  // No worker runs: the scan stays queued and `--wait` polls the database until interrupted.
  const waiting = start(t, process.execPath, [MAIN, 'scan', 'status', String(fullScanId), '--wait'], {
    env: productEnv({ DATABASE_URL: db.url, DSX_LOG_LEVEL: 'warn' }),
  });
  // The command's sessions: the ones whose last query read the progress view (this test never does).
  const sessions = async () =>
    (await db.pool.query("select count(*)::int as n from pg_stat_activity where datname = current_database() and query ilike '%full_scan_progress%' and pid <> pg_backend_pid()")).rows[0].n as number;
  // Nothing announces a session's last query: pg_stat_activity is polled.
  await waitFor(async () => (await sessions()) > 0, 'the command to poll the scan');
  waiting.proc.kill('SIGINT');
  t.same(await waiting.exited(15_000), { code: 130, signal: null });
  t.equal(waiting.stderr(), '', 'no error: the interruption is not a failure to report');
  t.equal(waiting.stdout(), '');
});
