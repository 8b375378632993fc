import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import t from 'tap';
import { PROJECT_DIR } from '../src/config.ts';
import { generateTree } from '../src/testing/tree.ts';
import { createTestDatabase } from './helpers/db.ts';
import { emulator, waitForScan } from './helpers/pipeline.ts';

const BIN = path.join(PROJECT_DIR, 'bin', 'dsx-connect.js');

function cli(env: NodeJS.ProcessEnv, ...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { env: { ...process.env, DSX_ENV_FILE: '/dev/null', ...env }, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout.trim(), stderr: r.stderr.trim() };
}

t.test('the operator flow through the CLI, with workers in separate processes by role', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const env = { DATABASE_URL: db.url, DSXA_URL: emu.url, DSX_LOG_LEVEL: 'warn', DSX_PAGE_SIZE: '50' };
  const dir = t.testdir();
  const tree = generateTree(path.join(dir, 'data'), { files: 300 });

  t.equal(cli(env, 'integration', 'add', '--name', 'local', '--kind', 'filesystem', '--root', dir).code, 0);
  const scopeAdd = cli(env, 'scope', 'add', '--integration', 'local', '--name', 'data', '--root', 'data');
  t.equal(scopeAdd.code, 0, scopeAdd.stderr);
  t.match(scopeAdd.stdout, /^\d+$/, 'scope add prints the id');
  const list = JSON.parse(cli(env, 'scope', 'list', '--json').stdout);
  t.match(list, [{ name: 'data', root: 'data', integration_name: 'local' }]);

  const overlap = cli(env, 'scope', 'add', '--integration', 'local', '--name', 'sub', '--root', 'data/alpha');
  t.equal(overlap.code, 1);
  t.match(overlap.stderr, /overlaps scope data/);

  const started = cli(env, 'scan', 'start', 'data');
  t.equal(started.code, 0, started.stderr);
  const id = started.stdout;
  t.match(id, /^\d+$/);
  const again = cli(env, 'scan', 'start', 'data');
  t.equal(again.stdout, id, 'a second start prints the active scan');
  t.match(again.stderr, /already has an active full scan/);

  // Two worker processes sharing the database: one enumerates/finalizes/acts, one scans.
  const procs = [
    spawn(process.execPath, [BIN, 'worker', '--roles', 'enumerate,finalize,remediate,notify', '--concurrency', '8'], { env: { ...process.env, ...env }, stdio: 'ignore' }),
    spawn(process.execPath, [BIN, 'worker', '--roles', 'scan', '--concurrency', '8'], { env: { ...process.env, ...env }, stdio: 'ignore' }),
  ];
  t.teardown(() => {
    for (const p of procs) p.kill('SIGKILL');
  });
  await waitForScan(db.pool, Number(id), 60_000);
  const status = JSON.parse(cli(env, 'scan', 'status', id, '--json').stdout);
  t.match(status, {
    id: Number(id),
    status: 'completed',
    discovered: tree.files,
    finalized: tree.files,
    outcomes: { clean: tree.clean, malicious: tree.eicar, unable_to_scan: 1 },
  });
  const results = JSON.parse(cli(env, 'results', '--scope', 'data', '--outcome', 'malicious', '--json').stdout);
  t.same(results.map((r: { identity: string }) => r.identity).sort(), tree.eicarPaths.map((p) => `data/${p}`).sort());
  t.match(results[0], { outcome: 'malicious', reason: 'virus', source_type: 'full_scan', full_scan_id: Number(id) });
  const all = JSON.parse(cli(env, 'results', '--scope', 'data', '--since', '2000-01-01T00:00:00Z', '--json').stdout);
  t.equal(all.length, tree.files);
  t.ok(all.every((r: { finalized_at: string }, i: number) => i === 0 || all[i - 1].finalized_at >= r.finalized_at), 'newest first');
  t.equal(JSON.parse(cli(env, 'results', '--scope', 'data', '--since', '2999-01-01T00:00:00Z', '--json').stdout).length, 0);
  const verify = cli(env, 'scan', 'verify', id);
  t.equal(verify.code, 0, verify.stdout);
  t.match(verify.stdout, /^ok +discovered counter = result rows: counter 300, rows 300$/m);
  t.notMatch(verify.stdout, /FAIL/);
  const stops = procs.map((p) => new Promise((r) => p.once('exit', r)));
  for (const p of procs) p.kill('SIGTERM');
  t.same(await Promise.all(stops), [0, 0], 'workers stop cleanly on SIGTERM');

  t.equal(cli(env, 'scan', 'cancel', id).stdout, 'completed', 'canceling a finished scan reports its status');
  const bad = [
    [['scan', 'status', 'abc'], /full scan id must be a positive integer/],
    [['scan', 'status', '99999'], /unknown full scan id 99999/],
    [['scan', 'cancel', id, '--mode', 'soon'], /--mode must be drain or interrupt/],
    [['scan', 'start', 'nope'], /unknown scope "nope"/],
    [['scope', 'add', '--integration', 'nope', '--name', 'x', '--root', 'x'], /unknown integration "nope"/],
    [['scope', 'add', '--integration', 'local', '--name', 'x', '--root', 'x', '--policy', '{bad'], /--policy is not valid JSON/],
    [['integration', 'add', '--name', 'y', '--kind', 'filesystem', '--root', '/does/not/exist'], /is not an existing directory/],
    [['worker', '--roles', 'scan,cook'], /unknown worker role "cook"/],
    [['results', '--scope', 'data', '--since', 'yesterday'], /--since must be an ISO-8601 time/],
    [['results', '--scope', 'nope'], /unknown scope "nope"/],
  ] as const;
  for (const [args, message] of bad) {
    const r = cli(env, ...args);
    t.not(r.code, 0, `${args.join(' ')} fails`);
    t.match(r.stderr, message);
  }
  const help = cli(env, 'scan', '--help');
  t.equal(help.code, 0);
  t.match(help.stdout, /start.*status.*cancel/s);
});
