/**
 * Destructive policies need intent: "delete" for any outcome, or any remediation of clean objects, is
 * refused on every path that sets a policy (dsx.create_scope, dsx.set_scope_policy, a direct update,
 * the CLI, GraphQL) unless confirmed, and a confirmation is recorded on the scope and in the audit log
 * with who gave it. A policy may name only channels that exist, and a channel a policy names cannot be
 * deleted, also when both happen at once.
 */
import type pg from 'pg';
import t from 'tap';
import { createTestDatabase } from './helpers/db.ts';
import { apiServer, token } from './helpers/graphql.ts';
import { runCli } from './helpers/cli-run.ts';
import { integrationCreate, scopeCreate } from '../src/db/sql/catalog.ts';
import { waitUntilBlocked } from './helpers/wait.ts';

const DELETE = { malicious: { remediation: 'delete', notify: true } };
const DESTRUCTIVE_MESSAGE = /^scope \S+: the policy is destructive \(malicious: delete\) and needs an explicit confirmation: --allow-destructive .*allowDestructive: true .*p_allow_destructive => true/;

/** A synthetic integration "base" with one scope "base" at root "base" (other scopes fit beside it). */
async function base(pool: pg.Pool): Promise<{ id: number; integration_id: number }> {
  const integration = await integrationCreate(pool, { name: 'base', kind: 'synthetic', settings: { objects: 1 } });
  return scopeCreate(pool, { integrationId: integration.id, name: 'base', root: 'base', include: [], exclude: [], policy: {}, monitor: false });
}

async function scopeRow(pool: pg.Pool, name: string) {
  const { rows } = await pool.query('select id::int, policy, destructive_confirmed_by, destructive_confirmed_at from dsx.scopes where name = $1', [name]);
  return rows[0] as { id: number; policy: unknown; destructive_confirmed_by: string | null; destructive_confirmed_at: Date | null } | undefined;
}

async function auditCount(pool: pg.Pool): Promise<number> {
  return (await pool.query<{ n: number }>('select count(*)::int as n from dsx.audit_log')).rows[0]!.n;
}

t.test('through the SQL functions and psql, a destructive policy needs p_allow_destructive, which records who confirmed it', async (t) => {
  const db = await createTestDatabase(t);
  const { integration_id: integrationId } = await base(db.pool);
  const c = await db.pool.connect();
  t.teardown(() => c.release());
  await c.query(`select set_config('dsx.actor', 'psql bob', false)`);
  const create = (name: string, policy: unknown, allow?: boolean) =>
    c.query(`select (dsx.create_scope($1, $2, $2, '{}', '{}', $3::jsonb, false${allow === undefined ? '' : ', $4'})).id::int as id`,
      allow === undefined ? [integrationId, name, JSON.stringify(policy)] : [integrationId, name, JSON.stringify(policy), allow]);

  const destructive: [unknown, string][] = [
    [DELETE, 'malicious: delete'],
    [{ unable_to_scan: { remediation: 'delete' } }, 'unable_to_scan: delete'],
    [{ clean: { remediation: 'move' } }, 'clean: move'],
    [{ clean: { remediation: 'tag' } }, 'clean: tag'],
    [{ clean: { remediation: 'delete' }, malicious: { remediation: 'delete' } }, 'clean: delete, malicious: delete'],
  ];
  for (const [policy, what] of destructive) {
    const err = await create('refused', policy).catch((e: Error & { code?: string; hint?: string }) => e);
    t.match(err, { code: '22023', message: `scope refused: the policy is destructive (${what}) and needs an explicit confirmation` }, `${JSON.stringify(policy)} is refused`);
    t.match((err as { hint?: string }).hint, /delete removes objects for good/, 'the hint says why');
    const explicitFalse = await create('refused', policy, false).catch((e: Error) => e);
    t.match(explicitFalse, { code: '22023' }, 'p_allow_destructive => false refuses it too');
  }
  t.equal(await scopeRow(db.pool, 'refused'), undefined, 'nothing was written');

  for (const [i, policy] of [{ clean: { tag: true } }, { clean: { remediation: 'none', notify: true } }, { malicious: { remediation: 'move' } }, {}].entries()) {
    await create(`fine${i}`, policy);
    t.match(await scopeRow(db.pool, `fine${i}`), { destructive_confirmed_by: null, destructive_confirmed_at: null }, `${JSON.stringify(policy)} needs no confirmation`);
  }
  const fineNonDestructiveAllowed = await create('fine-allowed', { malicious: { remediation: 'move' } }, true);
  t.ok(fineNonDestructiveAllowed.rows[0].id, 'the flag on a policy that is not destructive is harmless');
  t.match(await scopeRow(db.pool, 'fine-allowed'), { destructive_confirmed_by: null }, 'and records no confirmation');

  const since = await auditCount(db.pool);
  await create('wipe', DELETE, true);
  const wipe = (await scopeRow(db.pool, 'wipe'))!;
  t.match(wipe, { policy: DELETE, destructive_confirmed_by: 'psql bob' }, 'confirmed, by the session\'s actor');
  t.ok(wipe.destructive_confirmed_at instanceof Date, 'with the time');
  const { rows: created } = await db.pool.query('select actor, action, detail from dsx.audit_log where id > $1 order by id', [since]);
  t.match(created, [{
    actor: 'psql bob',
    action: 'scope.created',
    detail: { destructive_policy: { confirmed_by: 'psql bob', destructive: ['malicious: delete'] }, destructive_confirmed_by: 'psql bob' },
  }], 'the audit entry of the change records the confirmation');

  const other = { clean: { remediation: 'move' } };
  await t.rejects(c.query('select dsx.set_scope_policy($1, $2::jsonb)', [wipe.id, JSON.stringify(other)]), { code: '22023', message: /the policy is destructive \(clean: move\)/ },
    'a confirmed scope does not confirm the next destructive policy');
  await t.rejects(c.query(`update dsx.scopes set policy = $2::jsonb where id = $1`, [wipe.id, JSON.stringify(other)]), { code: '22023', message: /the policy is destructive/ },
    'nor does a direct update');
  await t.rejects(c.query(`update dsx.scopes set policy = $1::jsonb where name = 'fine0'`, [JSON.stringify(DELETE)]),
    { code: '22023', message: DESTRUCTIVE_MESSAGE }, 'a direct update of another scope to a destructive policy is refused');
  t.match(await scopeRow(db.pool, 'wipe'), { policy: DELETE, destructive_confirmed_by: 'psql bob' }, 'refusals changed nothing');

  // In one transaction: a confirmed change, then an unconfirmed one. The first confirmation does not carry over.
  await c.query('begin');
  await c.query('select dsx.set_scope_policy($1, $2::jsonb, true)', [wipe.id, JSON.stringify(other)]);
  await t.rejects(c.query(`update dsx.scopes set policy = '{"clean": {"remediation": "delete"}}' where id = $1`, [wipe.id]), { code: '22023' },
    'a second destructive change in the same transaction needs its own confirmation');
  await c.query('rollback');

  const before = await auditCount(db.pool);
  await c.query('select dsx.set_scope_policy($1, $2::jsonb)', [wipe.id, JSON.stringify(DELETE)]);
  t.equal(await auditCount(db.pool), before, 'setting the same destructive policy again needs no confirmation and changes nothing');

  await c.query('select dsx.set_scope_policy($1, $2::jsonb)', [wipe.id, JSON.stringify({ malicious: { remediation: 'move' } })]);
  t.match(await scopeRow(db.pool, 'wipe'), { destructive_confirmed_by: null, destructive_confirmed_at: null }, 'a policy that is no longer destructive drops the confirmation');
  await t.rejects(c.query('select dsx.set_scope_policy($1, $2::jsonb)', [wipe.id, JSON.stringify(DELETE)]), { code: '22023' }, 'going back needs a new confirmation');
  await c.query(`select set_config('dsx.actor', 'psql carol', false)`);
  await c.query('select dsx.set_scope_policy($1, $2::jsonb, p_allow_destructive => true)', [wipe.id, JSON.stringify(DELETE)]);
  t.match(await scopeRow(db.pool, 'wipe'), { destructive_confirmed_by: 'psql carol' }, 'which names the new confirmer');
});

t.test('the CLI refuses a destructive policy without --allow-destructive and records the confirmation under the OS user', async (t) => {
  const db = await createTestDatabase(t);
  await base(db.pool);
  const url = db.url;

  const refused = await runCli(url, ['scope', 'add', '--integration', 'base', '--name', 'wipe', '--root', 'w', '--policy', JSON.stringify(DELETE)]);
  t.equal(refused.code, 1, 'exit code 1');
  const lines = refused.stderr.split('\n');
  t.equal(lines.length, 2, refused.stderr);
  t.match(lines[0], /^error: scope wipe: the policy is destructive \(malicious: delete\) and needs an explicit confirmation: --allow-destructive/);
  t.match(lines[1], /^hint: delete removes objects for good/);
  t.equal(await scopeRow(db.pool, 'wipe'), undefined, 'nothing was written');

  const confirmed = await runCli(url, ['scope', 'add', '--integration', 'base', '--name', 'wipe', '--root', 'w', '--policy', JSON.stringify(DELETE), '--allow-destructive']);
  t.equal(confirmed.code, 0, confirmed.stderr);
  t.match(confirmed.stdout, /^\d+$/, 'prints the id');
  const row = (await scopeRow(db.pool, 'wipe'))!;
  t.match(row.destructive_confirmed_by, /^cli \S+@\S+$/, 'confirmed by "cli <user>@<host>"');
  const list = JSON.parse((await runCli(url, ['scope', 'list', '--json'])).stdout) as { name: string; destructive_confirmed_by: string | null }[];
  t.match(list.find((s) => s.name === 'wipe'), { destructive_confirmed_by: row.destructive_confirmed_by }, 'scope list shows who confirmed it');

  const clean = JSON.stringify({ clean: { remediation: 'move' } });
  const unconfirmed = await runCli(url, ['scope', 'set-policy', 'wipe', clean]);
  t.equal(unconfirmed.code, 1);
  t.match(unconfirmed.stderr, /^error: scope wipe: the policy is destructive \(clean: move\)/);
  t.same((await scopeRow(db.pool, 'wipe'))!.policy, DELETE, 'the refused policy changed nothing');
  const set = await runCli(url, ['scope', 'set-policy', 'wipe', clean, '--allow-destructive']);
  t.equal(set.code, 0, set.stderr);
  t.match(set.stdout, /^scope wipe: policy set; destructive \(clean: move\), confirmed by cli \S+@\S+$/);
  const { rows } = await db.pool.query(`select actor, detail from dsx.audit_log where action = 'scope.updated' order by id desc limit 1`);
  t.match(rows[0], { actor: row.destructive_confirmed_by, detail: { destructive_policy: { confirmed_by: row.destructive_confirmed_by, destructive: ['clean: move'] } } },
    'the audit entry names the same person');

  const again = await runCli(url, ['scope', 'set-policy', 'wipe', clean]);
  t.equal(again.code, 0, 'setting the same policy again is fine without the flag');
  t.equal(again.stdout, set.stdout, 'and still shows the confirmation it has');
});

t.test('GraphQL createScope and setScopePolicy take allowDestructive; updateScopeByRowId cannot confirm', async (t) => {
  const db = await createTestDatabase(t);
  const scope = await base(db.pool);
  const api = await apiServer(t, db.url);
  const operator = await token('operator');
  const createScope = `mutation($i: BigInt!, $name: String!, $policy: JSON, $allow: Boolean) {
    createScope(input: {integrationId: $i, name: $name, root: $name, policy: $policy, allowDestructive: $allow}) { scope { rowId destructiveConfirmedBy destructiveConfirmedAt } } }`;
  const setPolicy = `mutation($id: BigInt!, $policy: JSON!, $allow: Boolean) {
    setScopePolicy(input: {scopeId: $id, policy: $policy, allowDestructive: $allow}) { scope { policy destructiveConfirmedBy } } }`;

  const refused = await api.query(createScope, { i: scope.integration_id, name: 'wipe', policy: DELETE }, operator);
  t.match(refused.errors, [{ message: DESTRUCTIVE_MESSAGE, extensions: { code: '22023', hint: /updateScopeByRowId cannot confirm: use setScopePolicy/ } }]);
  t.equal(await scopeRow(db.pool, 'wipe'), undefined, 'nothing was written');

  const created = await api.query(createScope, { i: scope.integration_id, name: 'wipe', policy: DELETE, allow: true }, operator);
  t.notOk(created.errors, JSON.stringify(created.errors));
  t.match(created.data.createScope.scope, { destructiveConfirmedBy: 'api test-operator', destructiveConfirmedAt: /^\d{4}-/ }, 'confirmed by the API subject');
  const id = created.data.createScope.scope.rowId;

  const other = { clean: { remediation: 'delete' } };
  const unconfirmed = await api.query(setPolicy, { id, policy: other }, operator);
  t.match(unconfirmed.errors, [{ message: /the policy is destructive \(clean: delete\)/, extensions: { code: '22023' } }]);
  const viaPatch = await api.query(
    'mutation($id: BigInt!, $policy: JSON!) { updateScopeByRowId(input: {rowId: $id, scopePatch: {policy: $policy}}) { scope { policy } } }',
    { id, policy: other },
    operator,
  );
  t.match(viaPatch.errors, [{ message: /the policy is destructive \(clean: delete\)/ }], 'updateScopeByRowId is refused too');
  const forged = await api.query(
    'mutation($id: BigInt!) { updateScopeByRowId(input: {rowId: $id, scopePatch: {destructiveConfirmedBy: "someone else"}}) { scope { rowId } } }',
    { id },
    operator,
  );
  t.match(forged.errors, [{ message: /destructiveConfirmedBy/ }], 'the confirmation cannot be written through a patch');
  t.same((await scopeRow(db.pool, 'wipe'))!.policy, DELETE, 'refusals changed nothing');

  const viewer = await api.query(setPolicy, { id, policy: other, allow: true }, await token('viewer'));
  t.match(viewer.errors, [{ message: /permission denied/ }], 'a viewer cannot confirm');
  const confirmed = await api.query(setPolicy, { id, policy: other, allow: true }, operator);
  t.notOk(confirmed.errors, JSON.stringify(confirmed.errors));
  t.match(confirmed.data.setScopePolicy.scope, { policy: other, destructiveConfirmedBy: 'api test-operator' });
  const { rows } = await db.pool.query(`select actor, detail from dsx.audit_log where action = 'scope.updated' order by id desc limit 1`);
  t.match(rows[0], { actor: 'api test-operator', detail: { destructive_policy: { confirmed_by: 'api test-operator', destructive: ['clean: delete'] } } });
});

t.test('a policy naming a channel that does not exist is refused on every path, naming it and how to list channels', async (t) => {
  const db = await createTestDatabase(t);
  const scope = await base(db.pool);
  await db.pool.query(`select dsx.create_notification_channel('ops', 'https://hooks.example/ops', 'a-long-secret')`);
  const policy = { malicious: { notify: ['ops', 'pager'] }, unable_to_scan: { notify: ['audit', 'ops'] } };
  const message = /^scope \S+: the policy names notification channels "audit", "pager", which do not exist \(see: dsx-connect channel list\)$/;

  await t.rejects(db.pool.query(`select dsx.create_scope($1, 'n1', 'n1', '{}', '{}', $2::jsonb)`, [scope.integration_id, JSON.stringify(policy)]), { code: '23503', message }, 'dsx.create_scope');
  await t.rejects(db.pool.query('select dsx.set_scope_policy($1, $2::jsonb)', [scope.id, JSON.stringify(policy)]), { code: '23503', message }, 'dsx.set_scope_policy');
  await t.rejects(db.pool.query('update dsx.scopes set policy = $2::jsonb where id = $1', [scope.id, JSON.stringify({ timeout: { notify: ['pager'] } })]),
    { code: '23503', message: /names notification channel "pager", which does not exist \(see: dsx-connect channel list\)/ }, 'a direct update');

  const cliAdd = await runCli(db.url, ['scope', 'add', '--integration', 'base', '--name', 'n2', '--root', 'n2', '--policy', JSON.stringify(policy)]);
  t.equal(cliAdd.code, 1);
  t.match(cliAdd.stderr, /^error: scope n2: the policy names notification channels "audit", "pager", which do not exist \(see: dsx-connect channel list\)\nhint: add the channel first/);
  const cliSet = await runCli(db.url, ['scope', 'set-policy', 'base', JSON.stringify(policy)]);
  t.equal(cliSet.code, 1);
  t.match(cliSet.stderr, /^error: scope base: the policy names notification channels "audit", "pager"/);

  const api = await apiServer(t, db.url);
  const operator = await token('operator');
  const gqlCreate = await api.query('mutation($i: BigInt!, $p: JSON) { createScope(input: {integrationId: $i, name: "n3", root: "n3", policy: $p}) { scope { rowId } } }',
    { i: scope.integration_id, p: policy }, operator);
  t.match(gqlCreate.errors, [{ message, extensions: { code: '23503' } }], 'GraphQL createScope');
  const gqlSet = await api.query('mutation($id: BigInt!, $p: JSON!) { setScopePolicy(input: {scopeId: $id, policy: $p}) { scope { rowId } } }', { id: scope.id, p: policy }, operator);
  t.match(gqlSet.errors, [{ message }], 'GraphQL setScopePolicy');
  const gqlPatch = await api.query('mutation($id: BigInt!, $p: JSON!) { updateScopeByRowId(input: {rowId: $id, scopePatch: {policy: $p}}) { scope { rowId } } }', { id: scope.id, p: policy }, operator);
  t.match(gqlPatch.errors, [{ message }], 'GraphQL updateScopeByRowId');
  const { rows } = await db.pool.query('select count(*)::int as n, max(policy::text) as p from dsx.scopes');
  t.same(rows[0], { n: 1, p: '{}' }, 'nothing was written');

  const ok = await runCli(db.url, ['scope', 'set-policy', 'base', JSON.stringify({ malicious: { notify: ['ops'] } })]);
  t.equal(ok.code, 0, ok.stderr);

  const named = await runCli(db.url, ['channel', 'delete', 'ops']);
  t.equal(named.code, 1);
  t.equal(named.stderr, [
    `error: channel ops (id 1) is named by the policy of scope base and cannot be deleted`,
    'hint: take it out of those policies first (dsx-connect scope set-policy SCOPE JSON; GraphQL setScopePolicy)',
  ].join('\n'));
  await t.rejects(db.pool.query(`update dsx.notification_channels set name = 'ops2' where name = 'ops'`), { code: '2BP01', message: /cannot be renamed/ }, 'nor renamed');
  t.equal((await runCli(db.url, ['scope', 'set-policy', 'base', '{}'])).code, 0);
  const deleted = await runCli(db.url, ['channel', 'delete', 'ops']);
  t.equal(deleted.code, 0, deleted.stderr);
  t.equal(deleted.stdout, 'channel ops: deleted');
  const gone = await runCli(db.url, ['channel', 'delete', 'ops']);
  t.equal(gone.code, 1, 'deleting it again changes nothing and says so');
  t.equal(gone.stderr, 'error: unknown channel "ops" (see: dsx-connect channel list)');
  const { rows: secrets } = await db.pool.query('select count(*)::int as n from dsx_private.notification_channel_secrets');
  t.equal(secrets[0].n, 0, 'its secret went with it');
});

t.test('a channel deleted while a policy naming it commits is refused after the policy commits, never left dangling', async (t) => {
  const db = await createTestDatabase(t);
  const scope = await base(db.pool);
  await db.pool.query(`select dsx.create_notification_channel('ops', 'https://hooks.example/ops', 'a-long-secret')`);
  const setter = await db.pool.connect();
  const deleter = await db.pool.connect();
  t.teardown(() => {
    setter.release();
    deleter.release();
  });
  await setter.query('begin');
  await setter.query('select dsx.set_scope_policy($1, $2::jsonb)', [scope.id, JSON.stringify({ malicious: { notify: ['ops'] } })]);
  const { rows: pid } = await deleter.query<{ pid: number }>('select pg_backend_pid() as pid');
  const deleting = deleter.query(`delete from dsx.notification_channels where name = 'ops'`).then(() => null, (e: Error) => e);
  // The delete waits for the policy's lock on the channel row.
  const { rows: policy } = await setter.query<{ pid: number }>('select pg_backend_pid() as pid');
  await waitUntilBlocked(db.pool, { pid: pid[0]!.pid, blocker: policy[0]!.pid }, 'the delete to wait for the policy transaction');
  await setter.query('commit');
  const err = await deleting;
  t.match(err, { code: '2BP01', message: /channel ops \(id \d+\) is named by the policy of scope base and cannot be deleted/ }, 'the delete sees the committed policy');
  const { rows } = await db.pool.query(`select (select count(*)::int from dsx.notification_channels) as channels, (select policy from dsx.scopes where id = $1) as policy`, [scope.id]);
  t.same(rows[0], { channels: 1, policy: { malicious: { notify: ['ops'] } } });
});
