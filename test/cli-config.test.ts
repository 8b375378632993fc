/**
 * The CLI's configuration and input checks, through the real command: `.env` files, errors that name
 * the database in use, secrets that never go on the command line (channels, the emulator's token),
 * `channel list`, `--version`, and numeric options refused outside their ranges.
 */
import fs from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { loadConfig, loadEnvFile, PROJECT_DIR } from '../src/config.ts';
import { freePort } from '../src/testing/ports.ts';
import { createTestDatabase } from './helpers/db.ts';
import { MAIN, printedPort, productEnv, start } from './helpers/processes.ts';

const NO_DATABASE = 'postgres://nobody:hunter2-secret@127.0.0.1:1/none';

/** Runs `dsx-connect ...args` to its end. */
async function cli(t: Test, env: NodeJS.ProcessEnv, args: string[], stdin?: string) {
  const p = start(t, process.execPath, [MAIN, ...args], { env: productEnv({ DSX_LOG_LEVEL: 'warn', ...env }), stdin });
  const { code } = await p.exited(60_000);
  return { code, stdout: p.stdout().trim(), stderr: p.stderr().trim() };
}

t.test('loadEnvFile fills in what the environment lacks, relative paths from the file, and reads nothing without a file', async (t) => {
  const dir = t.testdir({ '.env': '# comment\nDSX_DATA_DIR=./state\nPORT=7000\nDSX_LOG_LEVEL="debug"\n' });
  const env: NodeJS.ProcessEnv = { PORT: '8000' };
  t.equal(loadEnvFile(env, dir), path.join(dir, '.env'), 'returns the file it read');
  t.same(env, { PORT: '8000', DSX_DATA_DIR: path.join(dir, 'state'), DSX_LOG_LEVEL: 'debug' }, 'the environment wins; DSX_DATA_DIR is relative to the file');
  const empty: NodeJS.ProcessEnv = {};
  t.equal(loadEnvFile(empty, t.testdir({})), undefined, 'no .env: nothing read');
  t.same(empty, {});
  const named: NodeJS.ProcessEnv = { DSX_ENV_FILE: path.join(dir, 'missing.env') };
  t.throws(() => loadEnvFile(named, dir), /^cannot read DSX_ENV_FILE \(.*missing\.env\): ENOENT$/, 'a named file must exist');
  t.equal(loadEnvFile({ DSX_ENV_FILE: '/dev/null' }, dir), '/dev/null', 'DSX_ENV_FILE=/dev/null reads no settings');
});

t.test('every command reads the env file, and the real environment wins over it', async (t) => {
  const db = await createTestDatabase(t);
  const dir = t.testdir({ good: `DATABASE_URL=${db.url}\n`, bad: `DATABASE_URL=${NO_DATABASE}\n` });
  const fromFile = await cli(t, { DSX_ENV_FILE: path.join(dir, 'good') }, ['integration', 'list', '--json']);
  t.equal(fromFile.code, 0, fromFile.stderr);
  t.same(JSON.parse(fromFile.stdout), [], 'the command used the database the file names');

  const envWins = await cli(t, { DSX_ENV_FILE: path.join(dir, 'bad'), DATABASE_URL: db.url }, ['integration', 'list', '--json']);
  t.equal(envWins.code, 0, 'DATABASE_URL from the environment, not the file');

  const missing = await cli(t, { DSX_ENV_FILE: path.join(dir, 'nope') }, ['integration', 'list']);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /^error: cannot read DSX_ENV_FILE \(.*nope\): ENOENT\nhint: /);
});

t.test('a database that cannot be reached is named in the error, without its password, with what to do', async (t) => {
  const r = await cli(t, { DATABASE_URL: NO_DATABASE }, ['scope', 'list']);
  t.equal(r.code, 1);
  t.match(r.stderr, /^error: cannot connect to DATABASE_URL postgres:\/\/nobody@127\.0\.0\.1:1\/none: connect ECONNREFUSED 127\.0\.0\.1:1\n/);
  t.match(r.stderr, /\nhint: a running instance \(npm start, dsx-connect dev\|worker\|server\) and this command must use the same DATABASE_URL, or DSX_DATA_DIR and DSX_EMBEDDED_PG_PORT/);
  t.notMatch(r.stderr, /hunter2/, 'the password is not printed');
  t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
});

t.test('an embedded data directory already served on another port names that port', async (t) => {
  // The state a `dev` started with another DSX_EMBEDDED_PG_PORT leaves: its postmaster.pid names a live
  // postmaster (here: this test process) and the port it listens on.
  const dir = t.testdir({ pg: { 'postmaster.pid': `${process.pid}\n/data\n1796100000\n54999\n/tmp\n127.0.0.1\n  1234 5678\nready\n` } });
  fs.chmodSync(dir, 0o755);
  fs.chmodSync(path.join(dir, 'pg'), 0o777);
  const r = await cli(t, { DSX_DATA_DIR: dir, DSX_EMBEDDED_PG_PORT: String(await freePort()) }, ['scope', 'list']);
  t.equal(r.code, 1);
  t.match(r.stderr, /^error: cannot use the embedded PostgreSQL on 127\.0\.0\.1:\d+ \(data in .*\/pg\): the server of that data directory is already running on port 54999 \(pid \d+\)\nhint: use DSX_EMBEDDED_PG_PORT=54999/);
});

t.test('channel secrets come from a file, stdin or DSX_CHANNEL_SECRET; a literal one is refused; list never shows them', async (t) => {
  const db = await createTestDatabase(t);
  const env = { DATABASE_URL: db.url };
  const dir = t.testdir({ 'ops.secret': 'file-secret-123\n', 'two-lines': 'a-secret-1\nb-secret-2\n', short: 'short\n' });
  const count = async () => (await db.pool.query('select count(*)::int as n from dsx.notification_channels')).rows[0].n as number;

  const literal = await cli(t, env, ['channel', 'add', '--name', 'ops', '--url', 'https://hooks.example/dsx', '--secret', 'literal-secret-1']);
  t.equal(literal.code, 1);
  t.equal(literal.stderr, 'error: --secret with a value on the command line is refused (other users can read it with ps): use --secret-file FILE, --secret - (one line from stdin) or DSX_CHANNEL_SECRET');
  t.equal(await count(), 0, 'nothing was created');

  const none = await cli(t, env, ['channel', 'add', '--name', 'ops', '--url', 'https://hooks.example/dsx']);
  t.equal(none.code, 1);
  t.match(none.stderr, /^error: a channel needs a signing secret: give --secret-file FILE, --secret - \(one line from stdin\) or DSX_CHANNEL_SECRET$/);

  const bad = [
    [['--secret-file', path.join(dir, 'two-lines')], /holds more than one line/],
    [['--secret-file', path.join(dir, 'absent')], /^error: cannot read --secret-file .*absent: ENOENT$/],
    [['--secret-file', path.join(dir, 'short')], /at least 8 characters/],
    [['--secret', '-', '--secret-file', path.join(dir, 'ops.secret')], /^error: give --secret - or --secret-file FILE, not both$/],
  ] as const;
  for (const [args, message] of bad) {
    const r = await cli(t, env, ['channel', 'add', '--name', 'x', '--url', 'https://hooks.example/x', ...args]);
    t.equal(r.code, 1, args.join(' '));
    t.match(r.stderr, message);
  }
  t.equal(await count(), 0, 'nothing was created by any refused form');

  const fromFile = await cli(t, env, ['channel', 'add', '--name', 'ops', '--url', 'https://hooks.example/dsx', '--secret-file', path.join(dir, 'ops.secret')]);
  t.equal(fromFile.code, 0, fromFile.stderr);
  t.match(fromFile.stdout, /^\d+$/, 'prints the id');
  const fromStdin = await cli(t, env, ['channel', 'add', '--name', 'sec', '--url', 'https://hooks.example/sec', '--secret', '-'], 'stdin-secret-456\n');
  t.equal(fromStdin.code, 0, fromStdin.stderr);
  const fromEnv = await cli(t, { ...env, DSX_CHANNEL_SECRET: 'env-secret-789' }, ['channel', 'add', '--name', 'env', '--url', 'https://hooks.example/env']);
  t.equal(fromEnv.code, 0, fromEnv.stderr);
  const { rows } = await db.pool.query(
    'select c.name, s.secret from dsx.notification_channels c join dsx_private.notification_channel_secrets s on s.channel_id = c.id order by c.id',
  );
  t.same(rows, [
    { name: 'ops', secret: 'file-secret-123' },
    { name: 'sec', secret: 'stdin-secret-456' },
    { name: 'env', secret: 'env-secret-789' },
  ], 'each secret stored as given, without its newline');

  const again = await cli(t, env, ['channel', 'add', '--name', 'ops', '--url', 'https://hooks.example/dsx', '--secret-file', path.join(dir, 'ops.secret')]);
  t.equal(again.code, 1, 'adding the same channel twice fails');
  t.equal(again.stderr, 'error: a channel named "ops" already exists (see: dsx-connect channel list)');
  t.equal(await count(), 3, 'and changes nothing');

  const list = await cli(t, env, ['channel', 'list', '--json']);
  t.equal(list.code, 0);
  const channels = JSON.parse(list.stdout) as Record<string, unknown>[];
  t.match(channels, [
    { name: 'ops', url: 'https://hooks.example/dsx', enabled: true, kind: 'webhook' },
    { name: 'sec', url: 'https://hooks.example/sec', enabled: true },
    { name: 'env', url: 'https://hooks.example/env', enabled: true },
  ]);
  t.ok(channels.every((c) => !('secret' in c)), 'no secret field');
  const text = await cli(t, env, ['channel', 'list']);
  t.match(text.stdout, /^\d+\tops\thttps:\/\/hooks\.example\/dsx\tenabled$/m);
  t.notMatch(list.stdout + text.stdout, /secret-(123|456|789)/, 'no secret value in either output');
});

t.test('the emulator takes its token from a file, stdin or DSXA_TOKEN, never from the command line', async (t) => {
  const dir = t.testdir({ token: 'emu-token-1\n' });
  const literal = await cli(t, {}, ['dsxa-emulator', '--port', '0', '--token', 'emu-token-1']);
  t.equal(literal.code, 1);
  t.match(literal.stderr, /^error: --token with a value on the command line is refused .*: use --token-file FILE, --token - \(one line from stdin\) or DSXA_TOKEN$/);

  const forms: [string, string[], NodeJS.ProcessEnv, string | undefined][] = [
    ['--token-file', ['--token-file', path.join(dir, 'token')], {}, undefined],
    ['--token -', ['--token', '-'], {}, 'emu-token-1\n'],
    ['DSXA_TOKEN', [], { DSXA_TOKEN: 'emu-token-1' }, undefined],
  ];
  for (const [what, args, env, stdin] of forms) {
    const emu = start(t, process.execPath, [MAIN, 'dsxa-emulator', '--port', '0', ...args], { env: productEnv(env), stdin });
    const port = printedPort(await emu.waitForStdout(/listening/));
    const scan = (token?: string) =>
      fetch(`http://127.0.0.1:${port}/scan/binary/v2`, { method: 'POST', body: 'hello', headers: token ? { AUTH_TOKEN: token } : {} }).then((r) => r.status);
    t.equal(await scan(), 401, `${what}: a scan without the token is refused`);
    t.equal(await scan('emu-token-1'), 200, `${what}: with it, scanned`);
    emu.proc.kill('SIGTERM');
    t.same(await emu.exited(), { code: 0, signal: null });
  }
});

t.test('--version prints the package version', async (t) => {
  const { version } = JSON.parse(fs.readFileSync(path.join(PROJECT_DIR, 'package.json'), 'utf8')) as { version: string };
  for (const flag of ['--version', '-V']) {
    const r = await cli(t, {}, [flag]);
    t.equal(r.code, 0);
    t.equal(r.stdout, version);
  }
});

t.test('numeric options and outcomes outside their ranges are refused with the range, before anything is done', async (t) => {
  const env = { DATABASE_URL: NO_DATABASE };
  const cases: [string[], string][] = [
    [['integration', 'add', '--name', 's', '--kind', 'synthetic', '--objects', '1e12'], '--objects must be a whole number from 0 to 999999999 (got "1e12")'],
    [['integration', 'add', '--name', 's', '--kind', 'synthetic', '--objects', '1000000000'], '--objects must be a whole number from 0 to 999999999 (got "1000000000")'],
    [['integration', 'add', '--name', 's', '--kind', 'synthetic', '--objects', '5', '--settings', '{"faults": {"read_fail_rate": 1.5}}'], '--settings faults.read_fail_rate: must be a number from 0 to 1'],
    [['integration', 'add', '--name', 's', '--kind', 'synthetic', '--objects', '5', '--settings', '{"faults": {"list_fail_rate": -0.1}}'], '--settings faults.list_fail_rate: must be a number from 0 to 1'],
    [['integration', 'add', '--name', 's', '--kind', 'synthetic', '--objects', '5', '--settings', '{"faults": {"read_fail": 0.5}}'], '--settings faults: unknown key "read_fail" (expected list_fail_rate, read_fail_rate, fail_first_lists)'],
    [['results', '--scope', 'x', '--limit', '0'], '--limit must be a whole number from 1 to 100000 (got "0")'],
    [['results', '--scope', 'x', '--limit', '1000001'], '--limit must be a whole number from 1 to 100000 (got "1000001")'],
    [['results', '--scope', 'x', '--outcome', 'infected'], '--outcome must be one of clean, malicious, unable_to_scan, unsupported_type, fetch_failed, timeout, policy_blocked, canceled (got "infected")'],
    [['worker', '--roles', 'enumerate', '--concurrency', '5000'], '--concurrency must be a whole number from 1 to 1000 (got "5000")'],
    [['server', '--port', '65536'], '--port must be a whole number from 0 to 65535 (got "65536")'],
    [['dsxa-emulator', '--port', '-1'], '--port must be a whole number from 0 to 65535 (got "-1")'],
    [['dsxa-emulator', '--fail-rate', '1.5'], '--fail-rate must be a number from 0 to 1 (got "1.5")'],
    [['dsxa-emulator', '--latency-ms', '600001'], '--latency-ms must be a number from 0 to 600000 (got "600001")'],
    [['dsxa-emulator', '--capacity', '0'], '--capacity must be a whole number from 1 to 10000 (got "0")'],
    [['token', 'create', '--name', 'x', '--role', 'viewer', '--expires-days', '99999'], '--expires-days must be a whole number from 1 to 36500 (got "99999")'],
  ];
  for (const [args, message] of cases) {
    const r = await cli(t, env, args);
    t.equal(r.code, 1, args.join(' '));
    t.equal(r.stderr, `error: ${message}`, 'one line with the range');
  }
});

t.test('.env.example uncommented as it ships is a valid configuration with the same values as no configuration', async (t) => {
  const text = fs.readFileSync(path.join(PROJECT_DIR, '.env.example'), 'utf8');
  const env: NodeJS.ProcessEnv = {};
  for (const line of text.split('\n')) {
    const m = /^# ([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
    if (m && m[1] !== 'DSX_ENV_FILE') env[m[1]!] = m[2];
  }
  t.ok(Object.keys(env).length > 30, `${Object.keys(env).length} variables`);
  const dir = t.testdir({ '.env': Object.entries(env).map(([k, v]) => `${k}=${v}`).join('\n') });
  const fromFile: NodeJS.ProcessEnv = {};
  loadEnvFile(fromFile, dir);
  const config = loadConfig(fromFile);
  const defaults = loadConfig({});
  // The data directory is relative to the file; everything else is the default.
  t.same({ ...config, dataDir: defaults.dataDir }, defaults);
});
