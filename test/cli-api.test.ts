/**
 * The CLI over the GraphQL API: a real server and real workers in this process, the real CLI as a
 * child process (asynchronously: the server it talks to runs on this event loop). The CLI gets a
 * DATABASE_URL that cannot connect, so anything it did not do through the API would fail.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { PROJECT_DIR } from '../src/config.ts';
import { freePort } from '../src/testing/ports.ts';
import { createTestDatabase } from './helpers/db.ts';
import { apiServer, token } from './helpers/graphql.ts';
import { emulator, fsScope, getScan, syntheticScope, waitFor, workers } from './helpers/pipeline.ts';

const MAIN = path.join(PROJECT_DIR, 'src', 'cli', 'main.ts');
const NO_DATABASE = 'postgres://nobody:nothing@127.0.0.1:1/none';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `dsx-connect ...args` to completion without blocking this process's event loop. */
function cli(
  env: NodeJS.ProcessEnv,
  args: string[],
  opts: { onStdout?: (chunk: string) => void; onSpawn?: (proc: ReturnType<typeof spawn>) => void; stdin?: string } = {},
): Promise<Run> {
  const proc = spawn(process.execPath, [MAIN, ...args], {
    env: { ...process.env, DATABASE_URL: NO_DATABASE, DSX_LOG_LEVEL: 'warn', DSX_ENV_FILE: '/dev/null', ...env },
    stdio: [opts.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  if (opts.stdin !== undefined) proc.stdin!.end(opts.stdin);
  opts.onSpawn?.(proc);
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (d: Buffer) => {
    stdout += d;
    opts.onStdout?.(String(d));
  });
  proc.stderr!.on('data', (d: Buffer) => { stderr += d; });
  return new Promise((resolve) => proc.once('close', (code) => resolve({ code, stdout: stdout.trim(), stderr: stderr.trim() })));
}

/** The outcome counts of a scan row, as `scan status` prints them (`  outcomes: clean=196 malicious=3`), parsed. */
function outcomes(s: Awaited<ReturnType<typeof getScan>>): Record<string, number> {
  const all: Record<string, number> = {
    clean: s.clean_count, malicious: s.malicious_count, unable_to_scan: s.unable_to_scan_count,
    unsupported_type: s.unsupported_type_count, fetch_failed: s.fetch_failed_count, timeout: s.timeout_count,
    policy_blocked: s.policy_blocked_count, canceled: s.canceled_count,
  };
  return Object.fromEntries(Object.entries(all).filter(([, n]) => n > 0));
}

function parseOutcomes(line: string | undefined): Record<string, number> {
  const m = /^  outcomes: (.*)$/.exec(line ?? '');
  if (!m) return {};
  return Object.fromEntries(m[1]!.split(' ').map((kv) => [kv.split('=')[0]!, Number(kv.split('=')[1])]));
}

t.test('scan start --follow shows progress over the API and ends with the exact final counts, exit 0', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t, { latencyMs: 5 });
  const api = await apiServer(t, db.url);
  const scope = await syntheticScope(db.pool, { objects: 3000, name: 'big' });
  await workers(t, db.pool, { dsxaUrl: emu.url, concurrency: 8 });
  const env = { DSX_API_URL: `${api.url}/graphql`, DSX_API_TOKEN: await token('operator') };

  const t0 = Date.now();
  const r = await cli(env, ['scan', 'start', 'big', '--follow']);
  const seconds = (Date.now() - t0) / 1000;
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stderr, '', 'nothing on stderr');
  const lines = r.stdout.split('\n');
  const id = Number(/^full scan (\d+) of scope big$/.exec(lines[0]!)?.[1]);
  t.ok(id > 0, `the first line names the scan: ${lines[0]}`);
  const final = await getScan(db.pool, id);
  t.match(final, { status: 'completed', discovered: 3000, finalized: 3000 });
  t.equal(lines.at(-3), `full scan ${id} of scope big: completed`, 'the output ends with the final status');
  t.match(lines.at(-2), /^  finalized 3000\/3000, [\d.]+ objects\/s$/);
  t.same(parseOutcomes(lines.at(-1)), outcomes(final), 'and the final counts, as in the database');
  // Not a TTY: plain lines, at most about one a second plus status changes, never going backwards.
  const progress = lines.filter((l) => l.startsWith(`full scan ${id} `) && l.includes('objects/s'));
  t.ok(progress.length >= 2, `${progress.length} progress lines`);
  t.ok(progress.length <= Math.ceil(seconds) + 4, `${progress.length} lines in ${seconds.toFixed(1)} s: throttled`);
  const finalized = progress.map((l) => Number(/: (\d+)\/\d+/.exec(l)![1]));
  t.same(finalized, [...finalized].sort((a, b) => a - b), 'finalized counts never go backwards');
  t.match(progress.at(-1), new RegExp(`^full scan ${id} completed: 3000/3000 \\(100\\.0%\\)`));

  const again = await cli(env, ['scan', 'status', String(id), '--json']);
  t.equal(again.code, 0);
  t.match(JSON.parse(again.stdout), { id, scope: 'big', scope_id: scope.id, status: 'completed', finished: true, discovered: 3000, finalized: 3000 });
  const direct = await cli({ DATABASE_URL: db.url, DSX_API_URL: '' }, ['scan', 'status', String(id), '--json']);
  t.equal(direct.code, 0, direct.stderr);
  t.same(JSON.parse(again.stdout), JSON.parse(direct.stdout), 'scan status --json prints the same over the API as from the database');
});

t.test('a failed scan exits 3, a canceled one 4; scan status and scan cancel work over the API', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t, { latencyMs: 30 });
  const api = await apiServer(t, db.url);
  const env = { DSX_API_URL: `${api.url}/graphql`, DSX_API_TOKEN: await token('operator') };

  // Failed: the scope's directory is gone by the time the scan enumerates it.
  const gone = path.join(t.testdir({ data: { 'a.txt': 'a' } }), 'data');
  await fsScope(db.pool, { dir: gone, name: 'gone' });
  fs.rmSync(gone, { recursive: true });
  await workers(t, db.pool, { dsxaUrl: emu.url, concurrency: 8 });
  const failed = await cli(env, ['scan', 'start', 'gone', '--follow']);
  t.equal(failed.code, 3, `a failed scan exits 3: ${failed.stdout} ${failed.stderr}`);
  t.match(failed.stdout, /: failed\n(.*\n)*  error: enumeration of page 0 failed/);

  // Canceled: follow a slow scan, cancel it from a second CLI.
  const scope = await syntheticScope(db.pool, { objects: 5000, name: 'slow' });
  let id = 0;
  const following = cli(env, ['scan', 'start', String(scope.id), '--follow'], {
    onStdout: (c) => { id ||= Number(/full scan (\d+) of scope slow/.exec(c)?.[1] ?? 0); },
  });
  await waitFor(async () => id > 0 && (await getScan(db.pool, id)).finalized > 20, 'the scan to make progress');
  const status = await cli(env, ['scan', 'status', String(id)]);
  t.equal(status.code, 0, 'a running scan: status exits 0');
  t.match(status.stdout, new RegExp(`^full scan ${id} of scope slow: running\n  finalized \\d+/\\d+`));
  // Ctrl-C stops following, not the scan: exit 130 and a line saying how to follow again.
  let watching = false;
  let interrupt = () => {};
  const watcher = cli(env, ['scan', 'status', String(id), '--follow'], { onStdout: () => { watching = true; }, onSpawn: (p) => { interrupt = () => p.kill('SIGINT'); } });
  await waitFor(async () => watching, 'the second follower to show progress');
  interrupt();
  const stopped = await watcher;
  t.equal(stopped.code, 130, 'SIGINT while following exits 130');
  t.match(stopped.stderr, new RegExp(`stopped following; full scan ${id} goes on \\(follow again: dsx-connect scan status ${id} --follow\\)`));
  t.equal((await getScan(db.pool, id)).status, 'running', 'and the scan goes on');
  const viewer = await cli({ ...env, DSX_API_TOKEN: await token('viewer') }, ['scan', 'cancel', String(id)]);
  t.equal(viewer.code, 1, 'a viewer cannot cancel');
  t.match(viewer.stderr, /^error: permission denied: .*\nhint: this needs an operator token/);
  const cancel = await cli(env, ['scan', 'cancel', String(id), '--mode', 'interrupt']);
  t.equal(cancel.code, 0, cancel.stderr);
  t.equal(cancel.stdout, 'canceled');
  const followed = await following;
  t.equal(followed.code, 4, `a canceled scan exits 4: ${followed.stderr}`);
  const final = await getScan(db.pool, id);
  t.ok(final.canceled_count > 0);
  t.same(parseOutcomes(followed.stdout.split('\n').at(-1)), outcomes(final), 'the final counts match the database');
  t.match(followed.stdout, new RegExp(`full scan ${id} of scope slow: canceled \\(interrupt\\)`));

  const again = await cli(env, ['scan', 'cancel', String(id)]);
  t.equal(again.stdout, 'canceled');
  t.match(again.stderr, /had already ended \(canceled\); nothing to cancel/);
  const waited = await cli(env, ['scan', 'status', String(id), '--wait', '--json']);
  t.equal(waited.code, 4, 'status of a canceled scan exits 4');
  t.match(JSON.parse(waited.stdout), { id, status: 'canceled', cancel_mode: 'interrupt', finalized: final.finalized });
  const unknown = await cli(env, ['scan', 'status', '424242', '--follow']);
  t.equal(unknown.code, 1);
  t.equal(unknown.stderr, 'error: unknown full scan id 424242');
  // Ids are BigInt everywhere in the API: one beyond GraphQL's 32-bit Int is just an id.
  const beyondInt = await cli(env, ['scan', 'status', '9999999999', '--follow']);
  t.equal(beyondInt.code, 1);
  t.equal(beyondInt.stderr, 'error: unknown full scan id 9999999999', 'an id beyond 2^31 reaches the server and is looked up');
});

t.test('authentication and connection errors are one clear line, a hint, and exit 1', async (t) => {
  const db = await createTestDatabase(t);
  const api = await apiServer(t, db.url);
  await syntheticScope(db.pool, { objects: 10, name: 'tiny' });
  const url = `${api.url}/graphql`;
  const badTokenFile = path.join(t.testdir({ token: 'dsx_nope\n' }), 'token');
  const cases: [string, NodeJS.ProcessEnv, string[], RegExp, string?][] = [
    ['no token', { DSX_API_URL: url }, ['scan', 'start', 'tiny'], /^error: the API at .* refused the request: authentication required: .*\nhint: pass --token or set DSX_API_TOKEN/],
    ['a bad token on stdin', { DSX_API_URL: url }, ['scan', 'start', 'tiny', '--token', '-'], /^error: the API at .* refused the request: authentication failed: unknown API token\nhint: check the token/, 'dsx_nope\n'],
    ['a bad token in a file, following', {}, ['scan', 'status', '1', '--follow', '--api-url', url, '--token-file', badTokenFile], /authentication failed: unknown API token/],
    [
      'a token on the command line',
      { DSX_API_URL: url, DSX_API_TOKEN: await token('operator') },
      ['scan', 'start', 'tiny', '--token', 'dsx_visible_in_ps'],
      /^error: --token with a value on the command line is refused \(other users can read it with ps\): use --token-file FILE, --token - \(one line from stdin\) or DSX_API_TOKEN$/,
    ],
    [
      'an expired JWT over websockets',
      { DSX_API_URL: url, DSX_API_TOKEN: await token('operator', -10) },
      ['scan', 'status', '1', '--wait'],
      /^error: the API at .* refused the request: authentication failed: the token has expired/,
    ],
    ['a bad URL', {}, ['scan', 'status', '1', '--api-url', 'ftp://x'], /^error: --api-url \/ DSX_API_URL must be an http\(s\) URL/],
  ];
  for (const [what, env, args, message, stdin] of cases) {
    const r = await cli(env, args, { stdin });
    t.equal(r.code, 1, `${what}: exit 1`);
    t.match(r.stderr, message, what);
    t.notMatch(r.stderr, /\n\s+at /, `${what}: no stack trace`);
  }
  t.equal(await db.pool.query('select count(*)::int as n from dsx.full_scans').then((r) => r.rows[0].n), 0, 'nothing was started');

  // Nobody listens on the default URL's port: --follow says where it looked and what to run.
  const port = await freePort();
  const down = await cli({ PORT: String(port), DSX_API_TOKEN: await token('operator') }, ['scan', 'start', 'tiny', '--follow']);
  t.equal(down.code, 1);
  t.match(down.stderr, new RegExp(`^error: cannot reach the DSX-Connect API at http://localhost:${port}/graphql \\(ECONNREFUSED\\)\\nhint: start the API with \`dsx-connect server\` \\(or everything with \`npm start\`\\)`));
  t.notMatch(down.stderr, /\n\s+at /);
});

t.test('the default API URL is localhost on PORT', async (t) => {
  const db = await createTestDatabase(t);
  const api = await apiServer(t, db.url);
  await syntheticScope(db.pool, { objects: 10, name: 'tiny' });
  const port = new URL(api.url).port;
  const r = await cli({ PORT: port, DSX_API_TOKEN: await token('viewer') }, ['scan', 'status', '1', '--api']);
  t.equal(r.code, 1);
  t.equal(r.stderr, 'error: unknown full scan id 1', 'reached the server on localhost:PORT');
  // A token from stdin implies --api, as --token TOKEN did, and is accepted.
  const viaStdin = await cli({ PORT: port }, ['scan', 'status', '1', '--token', '-'], { stdin: `${await token('viewer')}\n` });
  t.equal(viaStdin.stderr, 'error: unknown full scan id 1', 'a token read from stdin is sent to the API');
});
