/**
 * API tokens: the `token` CLI against a real server, and row-level security on dsx.api_tokens (an
 * operator sees every token, a viewer only its own, nobody the hashes), enforced by PostgreSQL.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import t from 'tap';
import { PROJECT_DIR } from '../src/config.ts';
import { createTestDatabase } from './helpers/db.ts';
import { apiServer, token } from './helpers/graphql.ts';
import { syntheticScope } from './helpers/pipeline.ts';

const MAIN = path.join(PROJECT_DIR, 'src', 'cli', 'main.ts');

/** Runs the CLI without blocking this process (the API server under test runs on its event loop). */
function cli(dbUrl: string, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const proc = spawn(process.execPath, [MAIN, ...args], { env: { ...process.env, DATABASE_URL: dbUrl, DSX_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d) => { stdout += d; });
  proc.stderr.on('data', (d) => { stderr += d; });
  return new Promise((resolve) => proc.once('close', (code) => resolve({ code, stdout: stdout.trim(), stderr: stderr.trim() })));
}

const TOKENS = '{ allApiTokens(orderBy: NAME_ASC) { nodes { name role revokedAt } } }';

t.test('token create/list/revoke: a created token works against the server, a revoked one is refused', async (t) => {
  const db = await createTestDatabase(t);
  const api = await apiServer(t, db.url);
  await syntheticScope(db.pool, { objects: 10 });

  const ci = await cli(db.url, 'token', 'create', '--name', 'ci', '--role', 'viewer');
  t.equal(ci.code, 0, ci.stderr);
  t.match(ci.stdout, /^dsx_[A-Za-z0-9_-]{32}$/, 'prints the token, once');
  const ops = await cli(db.url, 'token', 'create', '--name', 'ops', '--role', 'operator', '--expires-days', '30');
  t.equal(ops.code, 0, ops.stderr);
  const dup = await cli(db.url, 'token', 'create', '--name', 'ci', '--role', 'operator');
  t.equal(dup.code, 1);
  t.equal(dup.stderr, 'error: an API token named "ci" already exists (see: dsx-connect token list)');
  const badRole = await cli(db.url, 'token', 'create', '--name', 'x', '--role', 'admin');
  t.equal(badRole.code, 1);
  t.match(badRole.stderr, /--role must be viewer or operator/);

  const listed = JSON.parse((await cli(db.url, 'token', 'list', '--json')).stdout);
  t.match(listed, [{ name: 'ci', role: 'viewer', state: 'active', expires_at: null }, { name: 'ops', role: 'operator', state: 'active', expires_at: /^\d{4}-/ }]);
  const text = (await cli(db.url, 'token', 'list')).stdout;
  t.notMatch(text, ci.stdout, 'list never shows a token');
  t.notMatch(JSON.stringify(listed), /sha256|dsx_/);

  t.same((await api.query('{ allScopes { totalCount } }', {}, ci.stdout)).data, { allScopes: { totalCount: 1 } }, 'the created viewer token works');
  t.match((await api.query(`mutation { startFullScan(input: {scopeId: "1"}) { alreadyActive } }`, {}, ci.stdout)).errors, [{ message: /permission denied/ }], 'with its role');
  t.notOk((await api.query(`mutation { startFullScan(input: {scopeId: "1"}) { alreadyActive } }`, {}, ops.stdout)).errors, 'the operator token starts a scan');

  const revoked = await cli(db.url, 'token', 'revoke', 'ci');
  t.equal(revoked.code, 0, revoked.stderr);
  const refused = await api.query('{ allScopes { totalCount } }', {}, ci.stdout);
  t.same(refused.errors, [{ message: 'authentication failed: the API token was revoked', extensions: { code: 'UNAUTHENTICATED' } }], 'a revoked token is refused');
  t.match(JSON.parse((await cli(db.url, 'token', 'list', '--json')).stdout), [{ name: 'ci', state: 'revoked', revoked_at: /^\d{4}-/ }, { name: 'ops', state: 'active' }]);
  const again = await cli(db.url, 'token', 'revoke', 'ci');
  t.equal(again.code, 1);
  t.equal(again.stderr, 'error: no active API token named "ci"');
});

t.test('row-level security: an operator sees every token, a viewer only its own, nobody the hashes', async (t) => {
  const db = await createTestDatabase(t);
  const api = await apiServer(t, db.url);
  const viewerToken = (await cli(db.url, 'token', 'create', '--name', 'dashboard', '--role', 'viewer')).stdout;
  const operatorToken = (await cli(db.url, 'token', 'create', '--name', 'ops', '--role', 'operator')).stdout;
  await cli(db.url, 'token', 'create', '--name', 'other-viewer', '--role', 'viewer');

  // Through GraphQL.
  const asOperator = await api.query(TOKENS, {}, operatorToken);
  t.same(asOperator.data.allApiTokens.nodes.map((n: { name: string }) => n.name), ['dashboard', 'ops', 'other-viewer'], 'an operator sees all');
  const asViewer = await api.query(TOKENS, {}, viewerToken);
  t.same(asViewer.data, { allApiTokens: { nodes: [{ name: 'dashboard', role: 'viewer', revokedAt: null }] } }, 'a viewer sees only its own token');
  t.same((await api.query(TOKENS, {}, await token('viewer'))).data, { allApiTokens: { nodes: [] } }, 'a viewer with a JWT sees none');
  t.match((await api.query('{ allApiTokens { nodes { tokenSha256 } } }', {}, operatorToken)).errors, [{ message: /Cannot query field "tokenSha256"/ }], 'hashes are not in the schema');
  const revoke = 'mutation($name: String!) { revokeApiToken(input: {name: $name}) { apiToken { name revokedAt } } }';
  t.match((await api.query(revoke, { name: 'other-viewer' }, viewerToken)).errors, [{ message: /permission denied/ }], 'a viewer cannot revoke');
  const byOperator = await api.query(revoke, { name: 'other-viewer' }, operatorToken);
  t.notOk(byOperator.errors, JSON.stringify(byOperator.errors));
  t.match(byOperator.data.revokeApiToken.apiToken, { name: 'other-viewer', revokedAt: /^\d{4}-/ }, 'an operator can');
  t.match((await api.query(revoke, { name: 'nope' }, operatorToken)).errors, [{ message: "unknown API token 'nope'", extensions: { code: 'P0002' } }]);

  // Directly in SQL, under the roles the server switches to: PostgreSQL itself filters and refuses.
  const client = await db.pool.connect();
  t.teardown(() => client.release());
  const as = async <R>(role: string, subject: string, sql: string): Promise<R[]> => {
    await client.query('begin');
    try {
      await client.query(`select set_config('role', $1, true), set_config('dsx.subject', $2, true)`, [role, subject]);
      return (await client.query(sql)).rows as R[];
    } finally {
      await client.query('rollback');
    }
  };
  t.same(await as('dsx_viewer', 'token:dashboard', 'select name from dsx.api_tokens order by name'), [{ name: 'dashboard' }], 'viewer: its own row only');
  t.same(await as('dsx_viewer', 'token:nobody', 'select name from dsx.api_tokens'), [], 'viewer with another subject: nothing');
  t.same(await as('dsx_viewer', 'token:dashboard', `select count(*)::int as n from dsx.api_tokens where name = 'ops'`), [{ n: 0 }], 'not even by name');
  await t.rejects(as('dsx_viewer', 'token:dashboard', 'select token_sha256 from dsx.api_tokens'), { code: '42501' }, 'no role reads the hashes');
  await t.rejects(as('dsx_operator', 'ops', 'select token_sha256 from dsx.api_tokens'), { code: '42501' });
  await t.rejects(as('dsx_viewer', 'token:dashboard', `update dsx.api_tokens set revoked_at = now()`), { code: '42501' }, 'a viewer changes nothing');
  t.same(await as('dsx_operator', 'ops', 'select count(*)::int as n from dsx.api_tokens'), [{ n: 3 }], 'operator: every row');
  const { rows } = await db.pool.query(`select count(*)::int as n from dsx.api_tokens where revoked_at is not null`);
  t.equal(rows[0].n, 1, 'only the operator revocation changed anything');
});
