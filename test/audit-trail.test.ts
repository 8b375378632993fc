/**
 * The audit log says who did it and misses no change of the catalog: every create, update and delete
 * of integrations, scopes, channels, credentials, secrets and API tokens is recorded with the API
 * subject (or the CLI's OS user), what changed, and never a secret's value. History is kept: a scope
 * with scans or results cannot be deleted, only disabled.
 */
import os from 'node:os';
import t from 'tap';
import { hashToken } from '../src/server/auth.ts';
import { createTestDatabase } from './helpers/db.ts';
import { apiServer, operation, token } from './helpers/graphql.ts';
import { runCli } from './helpers/cli-run.ts';
import { fsScope } from './helpers/pipeline.ts';

const SECRET = 'audit-marker-secret-98765';

interface Entry {
  actor: string;
  action: string;
  scope_id: string | null;
  detail: Record<string, unknown>;
}

async function entries(pool: import('pg').Pool, since: number): Promise<Entry[]> {
  const { rows } = await pool.query<Entry>('select actor, action, scope_id, detail from dsx.audit_log where id > $1 order by id', [since]);
  return rows;
}

async function lastId(pool: import('pg').Pool): Promise<number> {
  const { rows } = await pool.query<{ id: string | null }>('select max(id) as id from dsx.audit_log');
  return Number(rows[0]!.id ?? 0);
}

t.test('API mutations are audited under the caller, with what changed and no secret', async (t) => {
  const db = await createTestDatabase(t);
  const api = await apiServer(t, db.url);
  await db.pool.query(`insert into dsx.api_tokens (name, role, token_sha256) values ('ops-bot', 'operator', $1)`, [hashToken('dsx_opsbot')]);
  const since = await lastId(db.pool);

  const share = t.testdir(); // createIntegration checks that a filesystem root exists on the API server's host
  const created = await api.query(operation('create-integration'), { name: 'share', kind: 'filesystem', settings: { root: share }, credentials: { password: SECRET } }, 'dsx_opsbot');
  t.notOk(created.errors, JSON.stringify(created.errors));
  const id = created.data.createIntegration.integration.rowId;
  const repointed = await api.query(
    'mutation($id: BigInt!) { updateIntegrationByRowId(input: {rowId: $id, integrationPatch: {settings: {root: "/"}}}) { integration { rowId } } }',
    { id },
    'dsx_opsbot',
  );
  t.notOk(repointed.errors, JSON.stringify(repointed.errors));
  const scope = await api.query(operation('create-scope'), { integrationId: Number(id), name: 'fin', root: 'fin', policy: {} }, 'dsx_opsbot');
  t.notOk(scope.errors, JSON.stringify(scope.errors));
  const scopeId = scope.data.createScope.scope.rowId;
  const patched = await api.query(
    'mutation($id: BigInt!) { updateScopeByRowId(input: {rowId: $id, scopePatch: {excludeGlobs: ["**/*.tmp"]}}) { scope { rowId } } }',
    { id: scopeId },
    await token('operator'),
  );
  t.notOk(patched.errors, JSON.stringify(patched.errors));
  const revoked = await api.query('mutation { revokeApiToken(input: {name: "ops-bot"}) { apiToken { name } } }', {}, 'dsx_opsbot');
  t.notOk(revoked.errors, JSON.stringify(revoked.errors));

  const log = await entries(db.pool, since);
  t.same(
    log.map((e) => [e.actor, e.action]),
    [
      ['api token:ops-bot', 'integration.created'],
      ['api token:ops-bot', 'integration.credentials.set'],
      ['api token:ops-bot', 'integration.updated'],
      ['api token:ops-bot', 'scope.created'],
      ['api test-operator', 'scope.updated'],
      ['api token:ops-bot', 'api_token.revoked'],
    ],
    'each change, in order, under the API subject that made it',
  );
  t.match(log[2]!.detail, { changes: { settings: { old: { root: share }, new: { root: '/' } } } }, 'a repointed integration shows old and new root');
  t.match(log[4]!.detail, { changes: { exclude_globs: { old: [], new: ['**/*.tmp'] } } }, 'a scope update shows what changed');
  t.equal(log[3]!.scope_id, String(scopeId), 'scope entries carry the scope id');
  t.notOk(JSON.stringify(log).includes(SECRET), 'no credential value in the log');
  t.notOk(JSON.stringify(log).includes(hashToken('dsx_opsbot')), 'no token hash in the log');
});

t.test('direct changes (psql, CLI) are audited too, under the session actor or the database user', async (t) => {
  const db = await createTestDatabase(t);
  const since = await lastId(db.pool);
  const c = await db.pool.connect();
  t.teardown(() => c.release());
  await c.query(`select set_config('dsx.actor', 'cli alice@laptop', false)`);
  await c.query(`select dsx.create_notification_channel('ops', 'https://hooks.example/x', $1)`, [SECRET]);
  await c.query(`update dsx.notification_channels set enabled = false where name = 'ops'`);
  await c.query(`update dsx.notification_channels set enabled = false where name = 'ops'`); // no change: no entry
  await c.query(`delete from dsx.notification_channels where name = 'ops'`);
  await c.query(`select set_config('dsx.actor', '', false)`);
  await c.query(`insert into dsx.api_tokens (name, role, token_sha256) values ('t1', 'viewer', 'h')`);
  const log = await entries(db.pool, since);
  t.same(
    log.map((e) => [e.actor, e.action]),
    [
      ['cli alice@laptop', 'notification_channel.created'],
      ['cli alice@laptop', 'notification_channel.secret.set'],
      ['cli alice@laptop', 'notification_channel.updated'],
      ['cli alice@laptop', 'notification_channel.deleted'],
      ['cli alice@laptop', 'notification_channel.secret.deleted'],
      [`db ${(await c.query('select session_user as u')).rows[0].u}`, 'api_token.created'],
    ],
  );
  t.notOk(JSON.stringify(log).includes(SECRET), 'no secret in the log');
});

t.test('a scope with history cannot be deleted, only disabled; one without history can', async (t) => {
  const db = await createTestDatabase(t);
  const api = await apiServer(t, db.url);
  const operator = await token('operator');
  const scope = await fsScope(db.pool, { dir: t.testdir({ 'a.txt': 'a' }), name: 'kept' });
  await db.pool.query(`select dsx.start_full_scan($1, 'test')`, [scope.id]);

  await t.rejects(db.pool.query('delete from dsx.scopes where id = $1', [scope.id]), {
    code: '2BP01',
    message: /scope kept \(id \d+\) has history \(1 full scans, 0 results, 0 storage events\) and cannot be deleted; disable it instead/,
  });
  const viaApi = await api.query('mutation($id: BigInt!) { deleteScopeByRowId(input: {rowId: $id}) { deletedScopeId } }', { id: scope.id }, operator);
  t.match(viaApi.errors, [{ message: /has history .* disable it instead/, extensions: { code: '2BP01', hint: /--disable/ } }], 'the API says the same');
  await t.rejects(db.pool.query('delete from dsx.integrations where id = $1', [scope.integration_id]), { code: '2BP01', message: /still has 1 scope/ });
  t.equal((await db.pool.query('select count(*)::int as n from dsx.full_scans')).rows[0].n, 1, 'the scan is still there');

  const disabled = await api.query('mutation($id: BigInt!) { updateScopeByRowId(input: {rowId: $id, scopePatch: {enabled: false}}) { scope { enabled } } }', { id: scope.id }, operator);
  t.same(disabled.data?.updateScopeByRowId.scope, { enabled: false }, 'disabling works');

  const other = await fsScope(db.pool, { dir: t.testdir(), name: 'unused' });
  await db.pool.query('delete from dsx.scopes where id = $1', [other.id]);
  await db.pool.query('delete from dsx.integrations where id = $1', [other.integration_id]);
  const { rows } = await db.pool.query<{ action: string }>(`select action from dsx.audit_log where action like '%.deleted' order by id`);
  t.same(rows.map((r) => r.action), ['scope.deleted', 'integration.deleted'], 'a scope and an integration without history are deleted, and audited');
});

t.test('every CLI command is audited under the OS user at the terminal, not the shared database role', async (t) => {
  const db = await createTestDatabase(t);
  const since = await lastId(db.pool);
  // token create and channel add go through different code paths; neither sets an actor itself.
  const made = await runCli(db.url, ['token', 'create', '--name', 'cli-audit', '--role', 'viewer']);
  t.equal(made.code, 0, made.stderr);
  const revoked = await runCli(db.url, ['token', 'revoke', 'cli-audit']);
  t.equal(revoked.code, 0, revoked.stderr);
  const actor = `cli ${os.userInfo().username}@${os.hostname()}`;
  const got = (await entries(db.pool, since)).filter((e) => e.action.startsWith('api_token.'));
  t.ok(got.length >= 2, JSON.stringify(got));
  t.same([...new Set(got.map((e) => e.actor))], [actor]);
});
