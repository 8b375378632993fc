import t from 'tap';
import { signJwt, hashToken } from '../src/server/auth.ts';
import { createTestDatabase } from './helpers/db.ts';
import { apiServer, operation, token } from './helpers/graphql.ts';
import { syntheticScope } from './helpers/pipeline.ts';

const SECRET_CREDENTIAL = 'very-secret-access-key-4711';

t.test('access control: tokens, roles, and credentials that never come back', async (t) => {
  const db = await createTestDatabase(t);
  const api = await apiServer(t, db.url);
  const scope = await syntheticScope(db.pool, { objects: 10 });
  const operator = await token('operator');
  const viewer = await token('viewer');
  const list = '{ allScopes { totalCount } }';

  t.match((await api.query(list)).errors, [{ message: /authentication required/, extensions: { code: 'UNAUTHENTICATED' } }], 'no token');
  t.match((await api.query(list, {}, await token('viewer', -60))).errors, [{ message: /token has expired/ }], 'expired token');
  const forged = await signJwt('another-secret-that-is-long-enough-to-sign', { role: 'operator', sub: 'mallory' }, 600);
  t.match((await api.query(list, {}, forged)).errors, [{ message: /signature is invalid/ }], 'forged token');
  t.match((await api.query(list, {}, 'dsx_not-a-real-token')).errors, [{ message: /unknown API token/ }], 'unknown API token');
  t.same((await api.query(list, {}, viewer)).data, { allScopes: { totalCount: 1 } }, 'a viewer reads');

  const start = await api.query(operation('start-full-scan'), { scopeId: scope.id }, viewer);
  t.match(start.errors, [{ message: /permission denied/ }], 'a viewer cannot start a scan');
  const { rows } = await db.pool.query('select count(*)::int as n from dsx.full_scans');
  t.equal(rows[0].n, 0, 'and nothing was started');
  await db.pool.query(`select dsx.start_full_scan($1, 'psql')`, [scope.id]);
  const cancel = await api.query(operation('cancel-full-scan'), { fullScanId: 1, mode: 'INTERRUPT' }, viewer);
  t.match(cancel.errors, [{ message: /permission denied/ }], 'a viewer cannot cancel');
  t.equal((await db.pool.query('select status from dsx.full_scans')).rows[0].status, 'queued');

  const created = await api.query(
    operation('create-integration'),
    { name: 'bucket', kind: 's3', settings: { bucket: 'bkt' }, credentials: { secret_access_key: SECRET_CREDENTIAL } },
    operator,
  );
  t.notOk(created.errors, JSON.stringify(created.errors));
  const viewerCreate = await api.query(operation('create-integration'), { name: 'x', kind: 's3', settings: {} }, viewer);
  t.match(viewerCreate.errors, [{ message: /permission denied/ }], 'a viewer cannot create integrations');
  const direct = await api.query('{ allIntegrations { nodes { credentials } } }', {}, operator);
  t.match(direct.errors, [{ message: /Cannot query field "credentials"/ }], 'credentials are not in the schema');
  for (const who of [viewer, operator]) {
    const all = await api.query('{ allIntegrations { nodes { rowId name kind settings createdAt updatedAt } } allAuditLogs { nodes { action detail } } }', {}, who);
    t.notOk(all.errors);
    t.notOk(JSON.stringify(all).includes(SECRET_CREDENTIAL), 'no query result carries the credentials');
  }
  const { rows: stored } = await db.pool.query(`select credentials->>'secret_access_key' as k from dsx_private.integration_credentials`);
  t.same(stored, [{ k: SECRET_CREDENTIAL }], 'they were stored (write-only)');

  await db.pool.query(`insert into dsx.api_tokens (name, role, token_sha256) values ('ci', 'viewer', $1)`, [hashToken('dsx_abc123')]);
  t.same((await api.query(list, {}, 'dsx_abc123')).data, { allScopes: { totalCount: 1 } }, 'an API token works');
  await db.pool.query(`update dsx.api_tokens set revoked_at = now()`);
  t.match((await api.query(list, {}, 'dsx_abc123')).errors, [{ message: /revoked/ }], 'a revoked API token does not');
});

t.test('invalid inputs give clear errors and change nothing', async (t) => {
  const db = await createTestDatabase(t);
  const api = await apiServer(t, db.url);
  const operator = await token('operator');
  const dir = t.testdir({ data: { a: { 'x.txt': 'x' } } });
  const integration = await api.query(operation('create-integration'), { name: 'share', kind: 'filesystem', settings: { root: dir } }, operator);
  const integrationId = integration.data.createIntegration.integration.rowId;
  const scope = await api.query(operation('create-scope'), { integrationId, name: 'data', root: 'data' }, operator);
  t.notOk(scope.errors, JSON.stringify(scope.errors));
  const scopeId = scope.data.createScope.scope.rowId;
  t.notOk((await api.query(operation('create-scope'), { integrationId, name: 'other', root: 'other' }, operator)).errors);
  const snapshot = async () =>
    (await db.pool.query(`select (select count(*) from dsx.scopes) as scopes, (select count(*) from dsx.full_scans) as scans,
                                 (select policy from dsx.scopes where id = $1) as policy`, [scopeId])).rows[0];
  const before = await snapshot();

  const unknown = await api.query(operation('start-full-scan'), { scopeId: 9999 }, operator);
  t.match(unknown.errors, [{ message: 'unknown scope id 9999', extensions: { code: 'P0002' } }]);
  const overlap = await api.query(operation('create-scope'), { integrationId, name: 'sub', root: 'data/a' }, operator);
  t.match(overlap.errors, [{ message: /overlaps scope data \(id \d+, root 'data'\)/, extensions: { code: '23P01' } }], 'the overlap names the colliding scope');
  const badPolicy = await api.query(operation('set-scope-policy'), { scopeId, policy: { malicious: { remediation: 'burn' } } }, operator);
  t.match(badPolicy.errors, [{ message: /remediation must be one of none, tag, move, delete/ }]);
  const badOutcome = await api.query(operation('set-scope-policy'), { scopeId, policy: { sunny: {} } }, operator);
  t.match(badOutcome.errors, [{ message: /unknown outcome/ }]);
  const badMode = await api.query(operation('cancel-full-scan'), { fullScanId: 1, mode: 'SOON' }, operator);
  t.match(badMode.errors, [{ message: /SOON/ }], 'an unknown cancel mode is refused by the schema');
  const unknownScan = await api.query(operation('cancel-full-scan'), { fullScanId: 4242, mode: 'DRAIN' }, operator);
  t.match(unknownScan.errors, [{ message: 'unknown full scan id 4242' }]);
  const updateOverlap = await api.query(
    `mutation($id: BigInt!) { updateScopeByRowId(input: {rowId: $id, scopePatch: {root: "other/deeper"}}) { scope { root } } }`,
    { id: scopeId },
    operator,
  );
  t.match(updateOverlap.errors, [{ message: /overlaps scope other/ }], 'an update that would overlap is refused too');
  t.same(await snapshot(), before, 'nothing changed');
});
