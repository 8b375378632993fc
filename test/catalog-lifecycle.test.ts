/**
 * The catalog's lifecycle from the command line: a scope is disabled and enabled (what to do with a scope
 * that has history), integrations, scopes and channels are deleted by name, and the history rule refuses
 * with one line and a hint. And a filesystem integration's root is checked the same way, in the same
 * words, by `integration add` and by GraphQL createIntegration.
 */
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { createTestDatabase } from './helpers/db.ts';
import { apiServer, operation, token } from './helpers/graphql.ts';
import { runCli } from './helpers/cli-run.ts';

t.test('scope update --disable/--enable and delete commands follow the history rule, each safe to run twice', async (t) => {
  const db = await createTestDatabase(t);
  const url = db.url;
  const dir = t.testdir({ kept: {}, spare: {} });
  const ok = async (args: string[], stdout?: string) => {
    const r = await runCli(url, args, { env: { DSX_CHANNEL_SECRET: 'a-long-secret' } });
    t.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    if (stdout !== undefined) t.equal(r.stdout, stdout, args.join(' '));
    return r;
  };
  await ok(['integration', 'add', '--name', 'share', '--kind', 'filesystem', '--root', dir]);
  await ok(['integration', 'add', '--name', 'unused', '--kind', 'synthetic', '--objects', '5']);
  await ok(['scope', 'add', '--integration', 'share', '--name', 'kept', '--root', 'kept']);
  await ok(['scope', 'add', '--integration', 'share', '--name', 'spare', '--root', 'spare']);
  await ok(['channel', 'add', '--name', 'ops', '--url', 'https://hooks.example/ops']);
  // History: a full scan of "kept" (queued is enough; no worker needed).
  await db.pool.query(`select dsx.start_full_scan((select id from dsx.scopes where name = 'kept'), 'test')`);

  const refused = await runCli(url, ['scope', 'delete', 'kept']);
  t.equal(refused.code, 1);
  t.equal(refused.stderr, [
    `error: scope kept (id 1) has history (1 full scans, 0 results, 0 storage events) and cannot be deleted; disable it instead`,
    'hint: dsx-connect scope update kept --disable (GraphQL: updateScopeByRowId with scopePatch {enabled: false}); a disabled scope is neither scanned nor monitored and keeps its history',
  ].join('\n'), 'one line and the hint');
  const integrationRefused = await runCli(url, ['integration', 'delete', 'share']);
  t.equal(integrationRefused.code, 1);
  t.match(integrationRefused.stderr, /^error: integration share \(id 1\) still has 2 scope\(s\) and cannot be deleted\nhint: delete its scopes first/);
  const { rows: kept } = await db.pool.query(`select (select count(*)::int from dsx.scopes) as scopes, (select count(*)::int from dsx.integrations) as integrations`);
  t.same(kept[0], { scopes: 2, integrations: 2 }, 'nothing was deleted');

  const since = (await db.pool.query<{ id: string }>('select max(id) as id from dsx.audit_log')).rows[0]!.id;
  await ok(['scope', 'update', 'kept', '--disable'], 'scope kept: disabled');
  await ok(['scope', 'update', 'kept', '--disable'], 'scope kept: disabled');
  const enabled = async () => (await db.pool.query(`select enabled from dsx.scopes where name = 'kept'`)).rows[0].enabled as boolean;
  t.equal(await enabled(), false, 'disabled');
  const { rows: log } = await db.pool.query('select actor, action, detail from dsx.audit_log where id > $1 order by id', [since]);
  t.equal(log.length, 1, 'disabling twice is one change');
  t.match(log[0], { actor: /^cli \S+@\S+$/, action: 'scope.updated', detail: { changes: { enabled: { old: true, new: false } } } }, 'audited under the OS user');
  await ok(['scope', 'update', 'kept', '--enable', '--no-monitor'], 'scope kept: enabled\nscope kept: monitoring off');
  t.equal(await enabled(), true, 'enabled again');
  const both = await runCli(url, ['scope', 'update', 'kept', '--enable', '--disable']);
  t.same([both.code, both.stderr], [1, 'error: give --enable or --disable, not both']);
  const nothing = await runCli(url, ['scope', 'update', 'kept']);
  t.same([nothing.code, nothing.stderr], [1, 'error: nothing to change: give --monitor, --no-monitor, --enable or --disable']);
  const unknownScope = await runCli(url, ['scope', 'update', 'nope', '--disable']);
  t.same([unknownScope.code, unknownScope.stderr], [1, 'error: unknown scope "nope" (see: dsx-connect scope list)']);

  await ok(['scope', 'delete', 'spare'], 'scope spare: deleted');
  const spareAgain = await runCli(url, ['scope', 'delete', 'spare']);
  t.same([spareAgain.code, spareAgain.stderr], [1, 'error: unknown scope "spare" (see: dsx-connect scope list)'], 'a second delete changes nothing and says so');
  await ok(['integration', 'delete', 'unused'], 'integration unused: deleted');
  const unusedAgain = await runCli(url, ['integration', 'delete', 'unused']);
  t.same([unusedAgain.code, unusedAgain.stderr], [1, 'error: unknown integration "unused" (see: dsx-connect integration list)']);
  await ok(['channel', 'delete', 'ops'], 'channel ops: deleted');

  const { rows: deletions } = await db.pool.query<{ actor: string; action: string }>(`select actor, action from dsx.audit_log where action like '%deleted' order by id`);
  t.match(deletions, [
    { action: 'scope.deleted', actor: /^cli / },
    { action: 'integration.deleted', actor: /^cli / },
    { action: 'notification_channel.deleted', actor: /^cli / },
    { action: 'notification_channel.secret.deleted', actor: /^cli / },
  ], 'each deletion is audited under the OS user');
  const { rows: left } = await db.pool.query('select name from dsx.scopes union all select name from dsx.integrations order by 1');
  t.same(left.map((r) => r.name), ['kept', 'share'], 'the scope with history and its integration remain');
});

t.test('createIntegration checks a filesystem root on the API host like integration add, in the same words', async (t) => {
  const db = await createTestDatabase(t);
  const api = await apiServer(t, db.url);
  const operator = await token('operator');
  const dir = t.testdir({ share: { 'a.txt': 'a' }, 'file.txt': 'not a directory', quarantine: {} });
  const share = path.join(dir, 'share');
  fs.chmodSync(path.join(dir, 'quarantine'), 0o700);
  const create = (name: string, settings: Record<string, unknown>) =>
    api.query(operation('create-integration'), { name, kind: 'filesystem', settings }, operator);

  const cases: [string, Record<string, unknown>, string[], RegExp][] = [
    ['a root that does not exist', { root: path.join(dir, 'missing') }, ['--root', path.join(dir, 'missing')],
      new RegExp(`^filesystem root ${path.join(dir, 'missing')} is not an existing directory on host \\S+$`)],
    ['a root that is a file', { root: path.join(dir, 'file.txt') }, ['--root', path.join(dir, 'file.txt')], /^filesystem root .*file\.txt is not an existing directory on host/],
    ['a quarantine inside the root', { root: share, quarantine_dir: path.join(share, 'q') }, ['--root', share, '--quarantine', path.join(share, 'q')],
      /^quarantine directory .*share\/q is inside the integration root .*share, where share users could tamper with it/],
  ];
  for (const [what, settings, flags, message] of cases) {
    const viaApi = await create('share', settings);
    t.match(viaApi.errors, [{ message, extensions: { code: '22023' } }], `GraphQL: ${what}`);
    const viaCli = await runCli(db.url, ['integration', 'add', '--name', 'share', '--kind', 'filesystem', ...flags]);
    t.equal(viaCli.code, 1, `CLI: ${what}`);
    const [error] = viaCli.stderr.split('\n');
    t.equal(error, `error: ${viaApi.errors?.[0]?.message}`, `${what}: the same message on both paths`);
  }
  const missing = await create('share', { root: path.join(dir, 'missing') });
  t.match(missing.errors?.[0]?.extensions, { hint: /the check runs where the command or API server runs/ }, 'the hint says where the check ran');
  const relative = await create('share', { root: 'relative/dir' });
  t.match(relative.errors, [{ message: /needs settings.root, an absolute directory path/ }], 'a relative root is left to the database');
  t.equal((await db.pool.query('select count(*)::int as n from dsx.integrations')).rows[0].n, 0, 'nothing was written');

  const created = await create('share', { root: share, quarantine_dir: path.join(dir, 'quarantine') });
  t.notOk(created.errors, JSON.stringify(created.errors));
  t.match(created.data.createIntegration.integration, { name: 'share', settings: { root: share } }, 'an existing directory is accepted');
  const s3 = await api.query(operation('create-integration'), { name: 'bucket', kind: 's3', settings: { bucket: 'some-bucket' } }, operator);
  t.notOk(s3.errors, 'other kinds are not checked on the host');
});
