import http from 'node:http';
import t from 'tap';
import WebSocket from 'ws';
import { createClient } from 'graphql-ws';
import { getIntrospectionQuery } from 'postgraphile/graphql';
import type { Test } from 'tap';
import { makePool } from '../src/db/connect.ts';
import { integrationCreate, scopeCreate } from '../src/db/sql/catalog.ts';
import { DEFAULT_API_LIMITS, type ApiLimits } from '../src/server/api-limits.ts';
import { startApiServer } from '../src/server/http.ts';
import { createTestDatabase } from './helpers/db.ts';
import { operation, type GraphQLResult } from './helpers/graphql.ts';

const ROWS = 2500;

/** A test database holding ROWS finalized scan results of one scope. */
async function database(t: Test) {
  const db = await createTestDatabase(t, 4);
  const integration = await integrationCreate(db.pool, { name: 'share', kind: 'filesystem', settings: { root: '/srv/share' } });
  const scope = await scopeCreate(db.pool, { integrationId: integration.id, name: 'finance', root: 'finance', include: [], exclude: [], policy: {}, monitor: false });
  await db.pool.query(
    `insert into dsx.scan_results (idempotency_key, scope_id, integration_id, object_identity, source_type, source_entity_id,
                                   correlation_id, root_job_id, requested_by, state, outcome, raw_result, finalized_at)
     select 'test:' || g, $1, $2, 'finance/report-' || g || '.pdf', 'manual', 'test', gen_random_uuid(), gen_random_uuid(), 'test',
            'finalized', 'clean', jsonb_build_object('verdict', 'Benign', 'padding', repeat('x', 200)), now() - g * interval '1 second'
     from generate_series(1, ${ROWS}) g`,
    [scope.id, integration.id],
  );
  return { ...db, scopeId: scope.id };
}

/** An open-mode API server on its own pool, counting every connection the pool hands out (every SQL statement needs one). */
async function server(t: Test, dbUrl: string, limits: Partial<ApiLimits> = {}) {
  const pool = makePool(dbUrl, 4);
  let acquired = 0;
  pool.on('acquire', () => { acquired += 1; });
  const api = await startApiServer({ pool, port: 0, auth: { mode: 'open', jwtSecret: undefined, pool }, limits });
  t.teardown(async () => {
    await api.close();
    await pool.end();
  });
  const post = async (body: string, headers: Record<string, string> = {}) => {
    const res = await fetch(`${api.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json', ...headers }, body });
    return { status: res.status, body: (await res.json()) as GraphQLResult };
  };
  const query = async (q: string, variables: Record<string, unknown> = {}) => (await post(JSON.stringify({ query: q, variables }))).body;
  return { api, post, query, acquired: () => acquired };
}

const limitOf = (r: GraphQLResult) => (r.errors ?? []).map((e) => e.extensions?.limit);

t.test('20 aliases of allScanResults(first: 100000) are refused before any SQL runs, and the server does not grow', async (t) => {
  const db = await database(t);
  const { query, acquired } = await server(t, db.url);
  const bomb = (first: number, aliases: number, fields = 'rowId objectIdentity outcome reason rawResult finalizedAt') =>
    `{ ${Array.from({ length: aliases }, (_, i) => `a${i}: allScanResults(first: ${first}) { nodes { ${fields} } }`).join(' ')} }`;
  global.gc?.();
  const rssBefore = process.memoryUsage().rss;
  const before = acquired();
  const refused = await query(bomb(100_000, 20));
  t.equal(acquired() - before, 0, 'no connection was taken from the pool: no SQL ran');
  t.equal(refused.data, undefined, 'no data at all');
  t.match(refused.errors?.[0], {
    message: 'the operation asks for 20 root fields (aliases included); the limit is 10 (DSX_API_MAX_ROOT_FIELDS): send several requests, or raise DSX_API_MAX_ROOT_FIELDS',
    extensions: { code: 'LIMIT_EXCEEDED', limit: 'DSX_API_MAX_ROOT_FIELDS', max: 10, requested: 20 },
  });
  t.match(refused.errors?.[1], {
    message: 'a0: allScanResults(first: 100000) asks for 100,000 rows; the largest page is 1,000 (DSX_API_MAX_PAGE_SIZE): page through with first and after, or raise DSX_API_MAX_PAGE_SIZE',
    extensions: { code: 'LIMIT_EXCEEDED', limit: 'DSX_API_MAX_PAGE_SIZE', max: 1000, requested: 100_000 },
    locations: [{ line: 1 }],
  }, 'each oversized page is named, with its alias');
  t.equal(refused.errors?.length, 5, 'at most five errors for one refusal');
  const grown = process.memoryUsage().rss - rssBefore;
  t.ok(grown < 32 * 1024 * 1024, `RSS grew ${Math.round(grown / 1024 / 1024)} MB (an unguarded run of this request took the API to 1.18 GB)`);

  // Within the page limit, the same shape is still refused: by the root fields, then by the cost budget.
  t.same(limitOf(await query(bomb(1000, 20))), ['DSX_API_MAX_ROOT_FIELDS']);
  const costly = await query(bomb(1000, 8));
  t.match(costly.errors, [{
    message: /^the operation could return up to 56,016 values \(rows from first\/last, 100 where neither is given, times the fields selected\); the budget is 50,000 \(DSX_API_MAX_COST\)/,
    extensions: { code: 'LIMIT_EXCEEDED', limit: 'DSX_API_MAX_COST', max: 50_000, requested: 56_016 },
  }]);
  t.equal(acquired() - before, 0, 'still no SQL');
  const fine = await query(bomb(1000, 7));
  t.equal(fine.errors, undefined, 'seven pages of 1,000 rows of six fields (49,014 values) are within the budget');
  t.equal(fine.data.a6.nodes.length, 1000);
});

t.test('first or last above the largest page is refused, not capped, whether literal or a variable', async (t) => {
  const db = await database(t);
  const { query, acquired } = await server(t, db.url);
  const before = acquired();
  const literal = await query('{ allScanResults(first: 100000) { nodes { rowId } } }');
  t.match(literal, { errors: [{ message: /^allScanResults\(first: 100000\) asks for 100,000 rows; the largest page is 1,000 \(DSX_API_MAX_PAGE_SIZE\)/, extensions: { limit: 'DSX_API_MAX_PAGE_SIZE', requested: 100_000 } }] });
  t.equal(literal.data, undefined);
  const variable = await query('query ($n: Int) { allScanResults(first: $n) { nodes { rowId } } }', { n: 5000 });
  t.match(variable.errors, [{ message: /^allScanResults\(first: 5000\) asks for 5,000 rows/ }], 'a variable cannot slip past (validation rules never see variable values)');
  const backwards = await query('{ allScopes(first: 1) { nodes { scanResultsByScopeId(last: 1001) { nodes { rowId } } } } }');
  t.match(backwards.errors, [{ message: /^allScopes\.nodes\.scanResultsByScopeId\(last: 1001\) asks for 1,001 rows; the largest page is 1,000 \(DSX_API_MAX_PAGE_SIZE\): page through with last and before/ }], 'nested connections and last too');
  const nullFirst = await query('{ allScanResults(first: null) { nodes { rowId } } }');
  t.match(nullFirst.errors, [{ message: 'allScanResults(first: null) would return every row: give first or last (at most 1,000), or leave both out for the default page of 100 rows (DSX_API_DEFAULT_PAGE_SIZE)', extensions: { requested: null } }]);
  const missing = await query('query ($n: Int) { allScanResults(first: $n) { nodes { rowId } } }');
  t.match(missing.errors, [{ message: /^allScanResults\(first: null\) would return every row/ }], 'a variable left out is no way around it either');
  t.equal(acquired() - before, 0, 'no SQL ran for any of them');
  const max = await query('query ($n: Int) { allScanResults(first: $n) { nodes { rowId } } }', { n: 1000 });
  t.equal(max.data.allScanResults.nodes.length, 1000, 'a page of exactly the limit is answered');
});

t.test('a connection without first or last returns the default page, with hasNextPage and the full totalCount', async (t) => {
  const db = await database(t);
  const { query } = await server(t, db.url);
  const top = await query('{ allScanResults { totalCount pageInfo { hasNextPage } nodes { rowId } } }');
  t.equal(top.errors, undefined);
  t.equal(top.data.allScanResults.nodes.length, 100, `${ROWS} rows, 100 returned`);
  t.equal(top.data.allScanResults.totalCount, ROWS);
  t.equal(top.data.allScanResults.pageInfo.hasNextPage, true, 'the client can tell that there is more');
  const nested = await query('{ allScopes { nodes { scanResultsByScopeId { edges { node { rowId } } } } } }');
  t.equal(nested.data.allScopes.nodes[0].scanResultsByScopeId.edges.length, 100, 'nested connections too');
  const backwards = await query('{ allScanResults(last: 3, orderBy: ROW_ID_ASC) { nodes { rowId } } }');
  t.equal(backwards.data.allScanResults.nodes.length, 3, 'last alone is not mixed with the default first');
  t.equal(backwards.data.allScanResults.nodes[2].rowId, String(ROWS), 'and pages from the end');
  const { query: small } = await server(t, db.url, { defaultPageSize: 7, maxPageSize: 7 });
  t.equal((await small('{ allScanResults { nodes { rowId } } }')).data.allScanResults.nodes.length, 7, 'the default page is configurable');
});

t.test('a depth bomb is refused, and so is a fragment bomb, before any SQL runs; fragments count as execution merges them', async (t) => {
  const db = await database(t);
  const { query, acquired } = await server(t, db.url);
  const before = acquired();
  let nested = 'rowId';
  for (let i = 0; i < 15; i++) nested = `scopesByIntegrationId(first: 1) { nodes { integrationByIntegrationId { ${nested} } } }`;
  const deep = await query(`{ allIntegrations(first: 1) { nodes { ${nested} } } }`);
  t.match(deep, { errors: [{ message: 'the operation is 48 fields deep; the limit is 10 (DSX_API_MAX_DEPTH): split it into several requests, or raise DSX_API_MAX_DEPTH', extensions: { limit: 'DSX_API_MAX_DEPTH', max: 10, requested: 48 } }] });
  t.equal(deep.data, undefined);
  // 20 fragments, each selecting two aliases that spread the next one: 2^20 paths from 2 KB of text.
  const doubling = Array.from({ length: 20 }, (_, i) =>
    `fragment F${i} on Scope { a: integrationByIntegrationId { scopesByIntegrationId(first: 1) { nodes { ...F${i + 1} } } } b: integrationByIntegrationId { scopesByIntegrationId(first: 1) { nodes { ...F${i + 1} } } } }`).join('\n');
  const started = Date.now();
  const bomb = await query(`{ allScopes(first: 1) { nodes { ...F0 } } }\n${doubling}\nfragment F20 on Scope { rowId }`);
  const expanded = { message: 'the operation has more than 10,000 selections once its fragments are expanded (each spread counts again); this limit is fixed: spread fewer or smaller fragments', extensions: { code: 'LIMIT_EXCEEDED', limit: 'expandedSelections' } };
  t.match(bomb.errors, [expanded]);
  // 24 fragments, each spreading the next twice: graphql merges them into one field, but grafast plans
  // every spread (2^24 of them: minutes of CPU).
  const twice = Array.from({ length: 24 }, (_, i) => `fragment G${i} on Query { ...G${i + 1} ...G${i + 1} }`).join('\n');
  t.match((await query(`{ ...G0 }\n${twice}\nfragment G24 on Query { allScopes { totalCount } }`)).errors, [expanded]);
  t.ok(Date.now() - started < 5000, `both are refused at once (${Date.now() - started} ms)`);
  t.equal(acquired() - before, 0, 'no SQL ran');
  const merged = await query('{ ...S ...S a: allScopes { totalCount } } fragment S on Query { allScopes { totalCount } }');
  t.same(merged, { data: { allScopes: { totalCount: 1 }, a: { totalCount: 1 } } }, 'a fragment spread twice is one field (two root fields here, not three)');
  const nine = await query('{ allScopes(first: 1) { nodes { fullScansByScopeId(first: 1) { nodes { scanResultsByFullScanId(first: 5) { nodes { sideEffectsByScanResultId(first: 5) { nodes { rowId } } } } } } } } }');
  t.equal(nine.errors, undefined, 'nine levels (scope -> full scans -> results -> side effects) are within the default');
});

t.test('ordinary queries, the shipped operations, GraphiQL\'s introspection and the README examples are answered', async (t) => {
  const db = await database(t);
  const { query, api } = await server(t, db.url);
  const status = await query(operation('scope-by-name'), { name: 'finance' });
  t.same(status, { data: { scopeByName: { rowId: String(db.scopeId), name: 'finance' } } });
  const readme = await query(`{ allScanResults(condition: {scopeId: "${db.scopeId}", outcome: "clean"}, orderBy: [FINALIZED_AT_DESC], first: 50) { totalCount nodes { objectIdentity outcome finalizedAt } } }`);
  t.equal(readme.data.allScanResults.nodes.length, 50);
  t.equal(readme.data.allScanResults.totalCount, ROWS);
  t.equal((await query('{ allIntegrations { nodes { rowId name kind settings createdAt updatedAt } } allAuditLogs { nodes { action detail } } }')).errors, undefined);
  const introspection = await query(getIntrospectionQuery({ descriptions: true, specifiedByUrl: true, directiveIsRepeatable: true, schemaDescription: true, inputValueDeprecation: true }));
  t.equal(introspection.errors, undefined, 'the full introspection query (15 fields deep) is answered');
  t.ok(introspection.data.__schema.types.length > 50);
  const cycle = await query('{ __schema { types { fields { type { fields { name } } } } } }');
  t.match(cycle.errors, [{ message: /^the introspection query selects __Type\.fields inside itself \(at __schema\.types\.fields\.type\.fields\); only __Type\.ofType may repeat along a path; this limit of introspection is fixed$/ }]);
  // Over websockets the same limits apply (grafast's execute middleware runs for every transport).
  const client = createClient({ url: `${api.url.replace('http', 'ws')}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0, lazy: true });
  t.teardown(() => client.dispose());
  const overWs = await new Promise<unknown>((resolve) => {
    client.subscribe({ query: '{ allScanResults(first: 100000) { nodes { rowId } } }' }, { next: resolve, error: resolve, complete: () => {} });
  });
  t.match(overWs, { errors: [{ message: /^allScanResults\(first: 100000\) asks for 100,000 rows/ }] }, 'a query sent over the websocket is refused');
  const okWs = await new Promise<unknown>((resolve, reject) => {
    client.subscribe({ query: '{ allScanResults(first: 2) { nodes { rowId } } }' }, { next: resolve, error: reject, complete: () => {} });
  });
  t.match(okWs, { data: { allScanResults: { nodes: [{}, {}] } } });
});

t.test('a body over DSX_API_MAX_BODY_BYTES gets 413 with a GraphQL error naming the setting, with or without Content-Length', async (t) => {
  const db = await database(t);
  const { post, api, acquired } = await server(t, db.url);
  const before = acquired();
  const big = JSON.stringify({ query: `{ allScopes { totalCount } }${' '.repeat(DEFAULT_API_LIMITS.maxBodyBytes)}` });
  const declared = await post(big);
  t.equal(declared.status, 413);
  t.match(declared.body, { errors: [{ message: `the request body has ${Buffer.byteLength(big)} bytes; the limit is 102400 bytes (DSX_API_MAX_BODY_BYTES): send a smaller request, or raise DSX_API_MAX_BODY_BYTES`, extensions: { code: 'LIMIT_EXCEEDED', limit: 'DSX_API_MAX_BODY_BYTES', max: 102_400 } }] });
  const chunked = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.request(`${api.url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json', 'transfer-encoding': 'chunked' } }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.write(big.slice(0, 60_000));
    req.end(big.slice(60_000));
  });
  t.equal(chunked.status, 413);
  t.match(JSON.parse(chunked.body), { errors: [{ message: /^the request body has more than 102400 bytes; the limit is 102400 bytes \(DSX_API_MAX_BODY_BYTES\)/ }] });
  t.equal(acquired() - before, 0, 'no SQL ran');
  t.equal((await post(JSON.stringify({ query: '{ allScopes { totalCount } }' }))).body.data?.allScopes.totalCount, 1, 'a small body is answered');
});

t.test('a websocket message over DSX_API_MAX_BODY_BYTES closes the socket with 1009 and runs nothing', async (t) => {
  const db = await database(t);
  const { api, acquired } = await server(t, db.url);
  const ws = new WebSocket(`${api.url.replace('http', 'ws')}/graphql`, 'graphql-transport-ws');
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  const before = acquired();
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  ws.send(JSON.stringify({ type: 'connection_init', payload: { padding: 'x'.repeat(DEFAULT_API_LIMITS.maxBodyBytes) } }));
  t.equal(await closed, 1009, 'message too big');
  t.equal(acquired() - before, 0);
});
