/**
 * Names and URLs are refused with a one-line message that states the rule, never a raw PostgreSQL
 * constraint error, from every path: the SQL functions (psql), the CLI (integration, scope, channel,
 * token) and GraphQL (the create functions, updates of names, lookups by name, and a name taken by a
 * concurrent transaction).
 */
import type pg from 'pg';
import t from 'tap';
import { NAME_RULE } from '../graphql/plugins/errors.ts';
import { createTestDatabase } from './helpers/db.ts';
import { apiServer, token } from './helpers/graphql.ts';
import { runCli } from './helpers/cli-run.ts';
import { waitUntilBlocked } from './helpers/wait.ts';

/** What no message may look like. */
const RAW = /violates|duplicate key|constraint "|domain dsx\.name/;

async function counts(pool: pg.Pool) {
  const { rows } = await pool.query(`select (select count(*)::int from dsx.integrations) as integrations, (select count(*)::int from dsx.scopes) as scopes,
                                            (select count(*)::int from dsx.notification_channels) as channels, (select count(*)::int from dsx.api_tokens) as tokens`);
  return rows[0] as Record<string, number>;
}

t.test('the SQL functions refuse bad names, taken names and bad URLs with the rule, writing nothing', async (t) => {
  const db = await createTestDatabase(t);
  const { rows: rule } = await db.pool.query<{ r: string }>('select dsx_private.name_rule() as r');
  t.equal(rule[0]!.r, NAME_RULE, 'the API says the rule in the same words as the database');
  const { rows: integ } = await db.pool.query<{ id: string }>(`select (dsx.create_integration('share', 'synthetic', '{"objects": 1}')).id`);
  const integrationId = integ[0]!.id;
  await db.pool.query(`select dsx.create_scope($1, 'docs', 'docs')`, [integrationId]);
  await db.pool.query(`select dsx.create_notification_channel('ops', 'https://hooks.example/ops', 'a-long-secret')`);
  const before = await counts(db.pool);

  const long = 'x'.repeat(64);
  const cases: [string, string, unknown[], RegExp][] = [
    ['an integration name with a space', `select dsx.create_integration($1, 'synthetic', '{"objects": 1}')`, ['has space'], /^integration name "has space" is not allowed: a name is 1-63 characters/],
    ['an integration name of 64 characters', `select dsx.create_integration($1, 'synthetic', '{"objects": 1}')`, [long], /^integration name "x{64}" is not allowed/],
    ['an integration name that starts with "-"', `select dsx.create_integration($1, 'synthetic', '{"objects": 1}')`, ['-x'], /^integration name "-x" is not allowed/],
    ['a missing integration name', `select dsx.create_integration(null, 'synthetic', '{"objects": 1}')`, [], /^integration needs a name: a name is 1-63 characters/],
    ['a taken integration name', `select dsx.create_integration('share', 'synthetic', '{"objects": 1}')`, [], /^an integration named "share" already exists \(see: dsx-connect integration list\)$/],
    ['a scope name with a slash', 'select dsx.create_scope($1, $2, $3)', [integrationId, 'a/b', 'other'], /^scope name "a\/b" is not allowed: a name is 1-63 characters/],
    ['an empty scope name', 'select dsx.create_scope($1, $2, $3)', [integrationId, '', 'other'], /^scope name "" is not allowed/],
    ['a taken scope name', 'select dsx.create_scope($1, $2, $3)', [integrationId, 'docs', 'other'], /^a scope named "docs" already exists \(see: dsx-connect scope list\)$/],
    // Its root overlaps its namesake's too: the name is what the repeat gets told about.
    ['the same scope added a second time', 'select dsx.create_scope($1, $2, $3)', [integrationId, 'docs', 'docs'], /^a scope named "docs" already exists \(see: dsx-connect scope list\)$/],
    ['a channel name with unicode', `select dsx.create_notification_channel($1, 'https://hooks.example/x', 'a-long-secret')`, ['öps'], /^channel name "öps" is not allowed/],
    ['a taken channel name', `select dsx.create_notification_channel('ops', 'https://hooks.example/x', 'a-long-secret')`, [], /^a channel named "ops" already exists \(see: dsx-connect channel list\)$/],
    ['an ftp URL', `select dsx.create_notification_channel('c2', $1, 'a-long-secret')`, ['ftp://hooks.example/x'], /^channel c2: url "ftp:\/\/hooks\.example\/x" is not an http\(s\) URL/],
    ['a URL without a host', `select dsx.create_notification_channel('c2', $1, 'a-long-secret')`, ['https://'], /^channel c2: url "https:\/\/" is not an http\(s\) URL/],
    ['a URL with a space', `select dsx.create_notification_channel('c2', $1, 'a-long-secret')`, ['https://hooks.example/a b'], /is not an http\(s\) URL/],
    ['an upper-case scheme', `select dsx.create_notification_channel('c2', $1, 'a-long-secret')`, ['HTTPS://hooks.example/'], /is not an http\(s\) URL/],
    ['a direct insert of a taken token name', `insert into dsx.api_tokens (name, role, token_sha256) values ('t1', 'viewer', 'h1'), ('t1', 'viewer', 'h2')`, [], /^an API token named "t1" already exists \(see: dsx-connect token list\)$/],
  ];
  for (const [what, sql, args, message] of cases) {
    const err = await db.pool.query(sql, args).then(() => null, (e: Error & { code?: string }) => e);
    t.match(err?.message, message, what);
    t.notMatch(err?.message ?? '', RAW, `${what}: not a raw constraint error`);
    t.equal(err?.message.split('\n').length, 1, 'one line');
  }
  await db.pool.query(`select dsx.create_scope($1, 'other', 'other')`, [integrationId]);
  await t.rejects(db.pool.query(`update dsx.scopes set name = 'docs' where name = 'other'`), { code: '23505', message: 'a scope named "docs" already exists (see: dsx-connect scope list)' },
    'a direct rename to a taken name');
  await t.rejects(db.pool.query(`update dsx.notification_channels set url = 'mailto:x@example.com' where name = 'ops'`), { message: /^channel ops: url "mailto:x@example.com" is not an http\(s\) URL/ },
    'a direct update of a URL');
  const after = await counts(db.pool);
  t.same(after, { ...before, scopes: before.scopes! + 1 }, 'nothing else was written');
  await db.pool.query(`select dsx.create_notification_channel('c2', 'http://127.0.0.1:8080/hook?x=1#f', 'a-long-secret')`);
  t.pass('an http URL with a port, query and fragment is fine');
});

t.test('the CLI says the rule for integration, scope, channel and token names, and for URLs', async (t) => {
  const db = await createTestDatabase(t);
  const dir = t.testdir();
  const url = db.url;
  const ok = async (args: string[], opts?: { env?: NodeJS.ProcessEnv }) => {
    const r = await runCli(url, args, opts);
    t.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  };
  await ok(['integration', 'add', '--name', 'share', '--kind', 'filesystem', '--root', dir]);
  await ok(['scope', 'add', '--integration', 'share', '--name', 'docs', '--root', 'docs']);
  const secretEnv = { DSX_CHANNEL_SECRET: 'a-long-secret' };
  await ok(['channel', 'add', '--name', 'ops', '--url', 'https://hooks.example/ops'], { env: secretEnv });
  await ok(['token', 'create', '--name', 'ci', '--role', 'viewer']);
  const before = await counts(db.pool);

  const refusals: [string[], string, NodeJS.ProcessEnv?][] = [
    [['integration', 'add', '--name', 'bad name', '--kind', 'filesystem', '--root', dir], `error: integration name "bad name" is not allowed: ${NAME_RULE} (dsx.name)`],
    [['integration', 'add', '--name', 'share', '--kind', 'filesystem', '--root', dir], 'error: an integration named "share" already exists (see: dsx-connect integration list)'],
    [['scope', 'add', '--integration', 'share', '--name', '.hidden', '--root', 'other'], `error: scope name ".hidden" is not allowed: ${NAME_RULE} (dsx.name)`],
    [['scope', 'add', '--integration', 'share', '--name', 'docs', '--root', 'other'], 'error: a scope named "docs" already exists (see: dsx-connect scope list)'],
    [['channel', 'add', '--name', 'ops!', '--url', 'https://hooks.example/x'], `error: channel name "ops!" is not allowed: ${NAME_RULE} (dsx.name)`, secretEnv],
    [['channel', 'add', '--name', 'ops', '--url', 'https://hooks.example/x'], 'error: a channel named "ops" already exists (see: dsx-connect channel list)', secretEnv],
    [['channel', 'add', '--name', 'c2', '--url', 'ftp://hooks.example/x'], 'error: channel c2: url "ftp://hooks.example/x" is not an http(s) URL (e.g. https://hooks.example/dsx)\nhint: webhook channels take an http:// or https:// URL with a host name, and no spaces', secretEnv],
    [['token', 'create', '--name', 'c i', '--role', 'viewer'], `error: API token name "c i" is not allowed: ${NAME_RULE} (dsx.name)`],
    [['token', 'create', '--name', 'ci', '--role', 'viewer'], 'error: an API token named "ci" already exists (see: dsx-connect token list)'],
  ];
  await Promise.all(refusals.map(async ([args, stderr, env]) => {
    const r = await runCli(url, args, { env });
    t.equal(r.code, 1, `${args.slice(0, 2).join(' ')}: exit code 1`);
    t.equal(r.stderr, stderr, args.join(' '));
    t.equal(r.stdout, '', 'nothing on stdout');
  }));
  t.same(await counts(db.pool), before, 'nothing was written');
  const unknown = await runCli(url, ['scope', 'set-policy', 'no such scope', '{}']);
  t.equal(unknown.stderr, 'error: unknown scope "no such scope" (see: dsx-connect scope list)', 'a lookup by a name outside the rule is just unknown');
});

t.test('GraphQL says the rule for names in creates, updates and lookups, and for URLs', async (t) => {
  const db = await createTestDatabase(t);
  const api = await apiServer(t, db.url);
  const operator = await token('operator');
  const q = async (query: string, variables: Record<string, unknown> = {}) => api.query(query, variables, operator);
  const integration = await q('mutation { createIntegration(input: {name: "share", kind: "synthetic", settings: {objects: 1}}) { integration { rowId } } }');
  const integrationId = integration.data.createIntegration.integration.rowId;
  await q('mutation { createIntegration(input: {name: "other", kind: "synthetic", settings: {objects: 1}}) { integration { rowId } } }');
  const scope = await q('mutation($i: BigInt!) { createScope(input: {integrationId: $i, name: "docs", root: "docs"}) { scope { rowId } } }', { i: integrationId });
  const scopeId = scope.data.createScope.scope.rowId;
  await q('mutation($i: BigInt!) { createScope(input: {integrationId: $i, name: "more", root: "more"}) { scope { rowId } } }', { i: integrationId });
  await q('mutation { createNotificationChannel(input: {name: "ops", url: "https://hooks.example/ops", secret: "a-long-secret"}) { notificationChannel { rowId } } }');
  const before = await counts(db.pool);

  const cases: [string, string, Record<string, unknown>, string | RegExp, string][] = [
    ['createIntegration, bad name', 'mutation { createIntegration(input: {name: "bad name", kind: "synthetic", settings: {objects: 1}}) { integration { rowId } } }', {},
      `integration name "bad name" is not allowed: ${NAME_RULE} (dsx.name)`, '22023'],
    ['createIntegration, taken name', 'mutation { createIntegration(input: {name: "share", kind: "synthetic", settings: {objects: 1}}) { integration { rowId } } }', {},
      'an integration named "share" already exists (see: dsx-connect integration list)', '23505'],
    ['createScope, bad name', 'mutation($i: BigInt!) { createScope(input: {integrationId: $i, name: "a b", root: "x"}) { scope { rowId } } }', { i: integrationId },
      `scope name "a b" is not allowed: ${NAME_RULE} (dsx.name)`, '22023'],
    ['createScope, taken name', 'mutation($i: BigInt!) { createScope(input: {integrationId: $i, name: "docs", root: "x"}) { scope { rowId } } }', { i: integrationId },
      'a scope named "docs" already exists (see: dsx-connect scope list)', '23505'],
    ['createNotificationChannel, bad name', 'mutation { createNotificationChannel(input: {name: "", url: "https://hooks.example/x", secret: "a-long-secret"}) { notificationChannel { rowId } } }', {},
      `channel name "" is not allowed: ${NAME_RULE} (dsx.name)`, '22023'],
    ['createNotificationChannel, taken name', 'mutation { createNotificationChannel(input: {name: "ops", url: "https://hooks.example/x", secret: "a-long-secret"}) { notificationChannel { rowId } } }', {},
      'a channel named "ops" already exists (see: dsx-connect channel list)', '23505'],
    ['createNotificationChannel, bad URL', 'mutation { createNotificationChannel(input: {name: "c2", url: "file:///etc/passwd", secret: "a-long-secret"}) { notificationChannel { rowId } } }', {},
      'channel c2: url "file:///etc/passwd" is not an http(s) URL (e.g. https://hooks.example/dsx)', '22023'],
    ['updateScopeByRowId, bad name', 'mutation($id: BigInt!) { updateScopeByRowId(input: {rowId: $id, scopePatch: {name: "no/slash"}}) { scope { name } } }', { id: scopeId },
      `this name is not allowed: ${NAME_RULE} (dsx.name)`, '22023'],
    ['updateScopeByRowId, taken name', 'mutation($id: BigInt!) { updateScopeByRowId(input: {rowId: $id, scopePatch: {name: "more"}}) { scope { name } } }', { id: scopeId },
      'a scope named "more" already exists (see: dsx-connect scope list)', '23505'],
    ['updateIntegrationByRowId, taken name', 'mutation($id: BigInt!) { updateIntegrationByRowId(input: {rowId: $id, integrationPatch: {name: "other"}}) { integration { name } } }', { id: integrationId },
      'an integration named "other" already exists (see: dsx-connect integration list)', '23505'],
    ['scopeByName, bad name', '{ scopeByName(name: "no such scope") { rowId } }', {},
      `this name is not allowed: ${NAME_RULE} (dsx.name)`, '22023'],
  ];
  for (const [what, query, variables, message, code] of cases) {
    const r = await q(query, variables);
    t.match(r.errors, [{ message, extensions: { code } }], what);
    t.notMatch(r.errors?.[0]?.message ?? '', RAW, `${what}: not a raw constraint error`);
  }
  t.same(await counts(db.pool), before, 'nothing was written');
});

t.test('a name taken by a concurrent transaction is still said in words through GraphQL', async (t) => {
  const db = await createTestDatabase(t);
  const api = await apiServer(t, db.url);
  const { rows: integ } = await db.pool.query<{ id: string }>(`select (dsx.create_integration('share', 'synthetic', '{"objects": 1}')).id`);
  const { rows: scope } = await db.pool.query<{ id: string }>(`select (dsx.create_scope($1, 'docs', 'docs')).id`, [integ[0]!.id]);
  const other = await db.pool.connect();
  t.teardown(() => other.release());
  // Another session renames a scope to "taken" and has not committed: the API's check cannot see it yet.
  await other.query('begin');
  await other.query(`select (dsx.create_scope($1, 'taken', 'taken')).id`, [integ[0]!.id]);
  const renaming = api.query('mutation($id: BigInt!) { updateScopeByRowId(input: {rowId: $id, scopePatch: {name: "taken"}}) { scope { name } } }', { id: scope[0]!.id }, await token('operator'));
  // The rename waits on the unique index for the other session.
  const { rows: otherPid } = await other.query<{ pid: number }>('select pg_backend_pid() as pid');
  await waitUntilBlocked(db.pool, { blocker: otherPid[0]!.pid }, 'the rename to wait for the other transaction');
  await other.query('commit');
  const r = await renaming;
  t.match(r.errors, [{ message: 'a scope named "taken" already exists (see: dsx-connect scope list)', extensions: { code: '23505' } }], 'the unique violation is said in words');
  const { rows } = await db.pool.query('select name from dsx.scopes order by id');
  t.same(rows.map((x) => x.name), ['docs', 'taken'], 'and the rename did not happen');
});
