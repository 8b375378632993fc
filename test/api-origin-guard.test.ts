import { spawn } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import WebSocket from 'ws';
import { createClient } from 'graphql-ws';
import { loadConfig, PROJECT_DIR } from '../src/config.ts';
import { makePool } from '../src/db/connect.ts';
import { DEFAULT_API_LIMITS } from '../src/server/api-limits.ts';
import { startApiServer } from '../src/server/http.ts';
import { checkOrigin } from '../src/server/origin-guard.ts';
import { freePort } from '../src/testing/ports.ts';
import { createTestDatabase } from './helpers/db.ts';
import { JWT_SECRET, operation, token } from './helpers/graphql.ts';

async function server(t: Test, dbUrl: string, opts: { mode: 'open' | 'token'; allowedOrigins?: string[] }) {
  const pool = makePool(dbUrl, 4);
  const api = await startApiServer({ pool, port: 0, auth: { mode: opts.mode, jwtSecret: JWT_SECRET, pool }, allowedOrigins: opts.allowedOrigins });
  t.teardown(async () => {
    await api.close();
    await pool.end();
  });
  return api;
}

interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One HTTP request with headers fetch would not let us set (Host). */
function request(url: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers: opts.headers }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

const gql = (url: string, query: string, headers: Record<string, string> = {}) =>
  request(`${url}/graphql`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json', ...headers }, body: JSON.stringify({ query }) });

/** A websocket upgrade that the server must refuse: its status and body, before any graphql-ws message. */
function refusedUpgrade(url: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url.replace('http', 'ws')}/graphql`, 'graphql-transport-ws', { headers });
    ws.once('open', () => { ws.close(); reject(new Error('the upgrade was accepted')); });
    ws.once('message', () => reject(new Error('a graphql-ws message arrived')));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.once('error', () => {}); // follows 'unexpected-response' once the request is aborted
  });
}

/** A graphql-ws client whose upgrade request carries `headers` (as a browser's carries its page's Origin). */
function wsClient(t: Test, url: string, headers: Record<string, string>, connectionParams: Record<string, unknown> = {}) {
  class HeaderWebSocket extends WebSocket {
    constructor(address: string, protocols?: string | string[]) {
      super(address, protocols, { headers });
    }
  }
  const client = createClient({ url: `${url.replace('http', 'ws')}/graphql`, webSocketImpl: HeaderWebSocket, retryAttempts: 0, lazy: true, connectionParams });
  t.teardown(() => client.dispose());
  /** Runs one operation; resolves with its result, or with the error that ended it. */
  return (query: string, variables: Record<string, unknown> = {}) =>
    new Promise<unknown>((resolve) => {
      client.subscribe({ query, variables }, { next: resolve, error: (err) => resolve({ transportError: err }), complete: () => {} });
    });
}

t.test('the origin rules, decided from Origin and Host alone', async (t) => {
  const open = { open: true, allowedOrigins: ['https://console.example.com'] };
  const tokens = { open: false, allowedOrigins: ['https://console.example.com'] };
  const cases: [typeof open, { origin?: string; host?: string }, boolean, string][] = [
    [open, { host: '127.0.0.1:5678' }, true, 'a non-browser client (no Origin)'],
    [open, { host: 'localhost:5678', origin: 'http://localhost:3000' }, true, 'a loopback page on another port'],
    [open, { host: '[::1]:5678', origin: 'http://[::1]:5678' }, true, 'IPv6 loopback'],
    [open, { host: '127.0.0.1:5678', origin: 'https://evil.example' }, false, 'a foreign page'],
    [open, { host: '127.0.0.1:5678', origin: 'null' }, false, 'a sandboxed or file:// page'],
    [open, { host: 'evil.example:5678', origin: 'http://evil.example:5678' }, false, 'DNS rebinding: a foreign name for our address'],
    [open, { host: 'evil.example:5678' }, false, 'a foreign Host without Origin'],
    [open, { host: '127.0.0.1:5678', origin: 'https://console.example.com' }, true, 'an allowed origin'],
    [{ ...open, listenHost: '10.0.0.5' } as typeof open, { host: '10.0.0.5:5678', origin: 'http://10.0.0.5:5678' }, true, 'the address the server was told to listen on'],
    [tokens, { host: 'dsx.example.com', origin: 'https://evil.example' }, false, 'tokens: a foreign page'],
    [tokens, { host: 'dsx.example.com', origin: 'https://dsx.example.com' }, true, 'tokens: the server\'s own page (same origin)'],
    [tokens, { host: 'dsx.example.com' }, true, 'tokens: any Host, no Origin'],
    [tokens, { host: 'dsx.example.com', origin: 'http://localhost:3000' }, false, 'tokens: loopback pages are not special'],
  ];
  for (const [policy, headers, ok, what] of cases) t.equal(checkOrigin(policy, headers).ok, ok, what);
  t.same(checkOrigin(tokens, { host: 'dsx.example.com', origin: 'https://console.example.com' }), { ok: true, corsOrigin: 'https://console.example.com' }, 'an allowed foreign origin gets CORS headers');
});

t.test('DSX_API_ALLOWED_ORIGINS and the limits are read and checked at start', async (t) => {
  const c = loadConfig({ DSX_API_ALLOWED_ORIGINS: ' https://Console.Example.com/ , http://localhost:3000' });
  t.same(c.apiAllowedOrigins, ['https://console.example.com', 'http://localhost:3000'], 'normalized');
  t.same(loadConfig({}).apiAllowedOrigins, [], 'default: no browser origins');
  t.same(loadConfig({}).apiLimits, DEFAULT_API_LIMITS);
  t.same(loadConfig({ DSX_API_MAX_PAGE_SIZE: '50', DSX_API_DEFAULT_PAGE_SIZE: '20' }).apiLimits, { ...DEFAULT_API_LIMITS, maxPageSize: 50, defaultPageSize: 20 });
  t.throws(() => loadConfig({ DSX_API_ALLOWED_ORIGINS: 'https://console.example.com/app' }), {
    message: 'invalid environment variable DSX_API_ALLOWED_ORIGINS: "https://console.example.com/app" is not an origin: give scheme://host[:port] with no path, e.g. https://console.example.com',
  });
  t.throws(() => loadConfig({ DSX_API_ALLOWED_ORIGINS: '*' }), { message: /DSX_API_ALLOWED_ORIGINS: "\*" is not an origin/ }, 'no wildcard');
  t.throws(() => loadConfig({ DSX_API_MAX_PAGE_SIZE: '50' }), {
    message: 'invalid environment variable DSX_API_DEFAULT_PAGE_SIZE: 100 is above DSX_API_MAX_PAGE_SIZE (50); lower it or raise DSX_API_MAX_PAGE_SIZE',
  });
  t.throws(() => loadConfig({ DSX_API_MAX_COST: 'lots' }), { message: /^invalid environment variable DSX_API_MAX_COST: / });
});

t.test('open mode: a foreign page\'s websocket is refused with 403 before any graphql-ws message, and its mutation never runs', async (t) => {
  const db = await createTestDatabase(t, 2);
  const api = await server(t, db.url, { mode: 'open' });
  const root = t.testdir();
  const integrations = async () => (await db.pool.query<{ name: string }>('select name from dsx.integrations order by name')).rows.map((r) => r.name);

  const refused = await refusedUpgrade(api.url, { origin: 'https://evil.example' });
  t.equal(refused.status, 403);
  t.same(JSON.parse(refused.body), {
    errors: [{
      message: 'request refused: the API runs open (no token needed, every caller is an operator), so browser pages may call it only from http://localhost, http://127.0.0.1 or http://[::1] (any port), not from "https://evil.example"; list that origin in DSX_API_ALLOWED_ORIGINS to allow it, or require tokens (set DSX_JWT_SECRET for `dev`, or run `dsx-connect server` without --open)',
      extensions: { code: 'FORBIDDEN_ORIGIN' },
    }],
  });
  const evil = wsClient(t, api.url, { origin: 'https://evil.example' });
  t.match(await evil(operation('create-integration'), { name: 'evil', kind: 'filesystem', settings: { root } }), { transportError: {} }, 'graphql-ws sees the connection fail');
  const rebound = wsClient(t, api.url, { host: `evil.example:${api.port}`, origin: `http://evil.example:${api.port}` });
  t.match(await rebound(operation('create-integration'), { name: 'rebound', kind: 'filesystem', settings: { root } }), { transportError: {} }, 'DNS rebinding (a foreign Host) too');
  const host = await refusedUpgrade(api.url, { host: `evil.example:${api.port}` });
  t.equal(host.status, 403);
  t.match(JSON.parse(host.body), { errors: [{ message: /^request refused: the API runs open .* only answers requests addressed to localhost, 127\.0\.0\.1 or \[::1\], not to "evil\.example:\d+"; open it at http:\/\/127\.0\.0\.1:<port>\//, extensions: { code: 'FORBIDDEN_HOST' } }] });
  t.same(await integrations(), [], 'neither mutation ran');

  const local = wsClient(t, api.url, { origin: 'http://localhost:3000' });
  t.match(await local(operation('create-integration'), { name: 'local', kind: 'filesystem', settings: { root } }), { data: { createIntegration: { integration: { name: 'local' } } } });
  const noOrigin = wsClient(t, api.url, {});
  t.match(await noOrigin('{ allIntegrations { totalCount } }'), { data: { allIntegrations: { totalCount: 1 } } }, 'a client without Origin (the CLI) still works');
  t.same(await integrations(), ['local'], 'a loopback origin still works');
});

t.test('open mode over HTTP: a foreign Origin or Host gets 403 on /graphql and on GraphiQL; loopback pages and the CLI are answered', async (t) => {
  const db = await createTestDatabase(t, 2);
  const api = await server(t, db.url, { mode: 'open' });
  const foreignOrigin = await gql(api.url, 'mutation { createIntegration(input: {name: "evil", kind: "filesystem", settings: {root: "/"}}) { integration { rowId } } }', { origin: 'https://evil.example' });
  t.equal(foreignOrigin.status, 403);
  t.equal(foreignOrigin.headers['content-type'], 'application/json');
  t.match(JSON.parse(foreignOrigin.body), { errors: [{ message: /not from "https:\/\/evil\.example"; list that origin in DSX_API_ALLOWED_ORIGINS/, extensions: { code: 'FORBIDDEN_ORIGIN' } }] });
  const foreignHost = await gql(api.url, '{ allIntegrations { totalCount } }', { host: `evil.example:${api.port}`, origin: `http://evil.example:${api.port}` });
  t.equal(foreignHost.status, 403);
  t.match(JSON.parse(foreignHost.body), { errors: [{ extensions: { code: 'FORBIDDEN_HOST' } }] });
  const page = await request(`${api.url}/`, { headers: { host: `evil.example:${api.port}`, accept: 'text/html' } });
  t.equal(page.status, 403, 'GraphiQL on a rebound name is refused');
  t.equal((await request(`${api.url}/`, { headers: { accept: 'text/html' } })).status, 200, 'GraphiQL on 127.0.0.1 is served');
  t.equal((await request(`${api.url}/healthz`, { headers: { host: 'evil.example' } })).status, 200, 'health checks are not GraphQL and stay open');
  t.same(await db.pool.query('select count(*)::int as n from dsx.integrations').then((r) => r.rows[0].n), 0, 'nothing was created');
  const ownPage = await gql(api.url, '{ allIntegrations { totalCount } }', { origin: api.url });
  t.same(JSON.parse(ownPage.body), { data: { allIntegrations: { totalCount: 0 } } }, 'GraphiQL\'s own requests (same origin) are answered');
  t.equal(ownPage.headers['access-control-allow-origin'], undefined, 'and need no CORS');
  const cli = await gql(api.url, '{ allIntegrations { totalCount } }');
  t.equal(cli.status, 200, 'no Origin: the CLI and curl are unaffected');
});

t.test('with tokens, only the server\'s own origin and DSX_API_ALLOWED_ORIGINS may send browser requests; requests without Origin are unaffected', async (t) => {
  const db = await createTestDatabase(t, 2);
  const api = await server(t, db.url, { mode: 'token', allowedOrigins: ['https://console.example.com'] });
  const auth = { authorization: `Bearer ${await token('viewer')}` };
  const refused = await gql(api.url, '{ allIntegrations { totalCount } }', { ...auth, origin: 'https://evil.example' });
  t.equal(refused.status, 403);
  t.same(JSON.parse(refused.body), {
    errors: [{ message: 'request refused: browser requests from "https://evil.example" are not allowed; list that origin in DSX_API_ALLOWED_ORIGINS (comma-separated, e.g. https://console.example.com) to allow it', extensions: { code: 'FORBIDDEN_ORIGIN' } }],
  });
  const allowed = await gql(api.url, '{ allIntegrations { totalCount } }', { ...auth, origin: 'https://console.example.com' });
  t.same(JSON.parse(allowed.body), { data: { allIntegrations: { totalCount: 0 } } });
  t.equal(allowed.headers['access-control-allow-origin'], 'https://console.example.com', 'the allowed page may read the answer (CORS)');
  t.equal(allowed.headers.vary, 'Origin');
  const preflight = await request(`${api.url}/graphql`, { method: 'OPTIONS', headers: { origin: 'https://console.example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' } });
  t.equal(preflight.status, 204);
  t.match(preflight.headers, { 'access-control-allow-origin': 'https://console.example.com', 'access-control-allow-headers': 'authorization, content-type, accept', 'access-control-allow-methods': 'GET, POST, OPTIONS' });
  t.equal((await request(`${api.url}/graphql`, { method: 'OPTIONS', headers: { origin: 'https://evil.example' } })).status, 403, 'a foreign preflight is refused');
  t.equal((await gql(api.url, '{ allIntegrations { totalCount } }', { ...auth, host: 'dsx.example.com' })).status, 200, 'no Origin: any Host, as behind a proxy');
  t.equal((await gql(api.url, '{ allIntegrations { totalCount } }', { ...auth, host: 'dsx.example.com', origin: 'https://dsx.example.com' })).status, 200, 'the server\'s own page');
  t.equal((await gql(api.url, '{ allIntegrations { totalCount } }', { origin: 'https://console.example.com' })).status, 401, 'an allowed origin still needs a token');
  const ws = await refusedUpgrade(api.url, { origin: 'https://evil.example' });
  t.equal(ws.status, 403);
  t.match(JSON.parse(ws.body), { errors: [{ extensions: { code: 'FORBIDDEN_ORIGIN' } }] });
  const console_ = wsClient(t, api.url, { origin: 'https://console.example.com' }, { authorization: auth.authorization });
  t.match(await console_('{ allIntegrations { totalCount } }'), { data: { allIntegrations: { totalCount: 0 } } }, 'the allowed origin\'s websocket works');
});

t.test('dsx-connect server --open applies DSX_API_ALLOWED_ORIGINS and the DSX_API_* limits from the environment', async (t) => {
  const db = await createTestDatabase(t, 2);
  const port = await freePort();
  const proc = spawn(process.execPath, [path.join(PROJECT_DIR, 'bin', 'dsx-connect.js'), 'server', '--open'], {
    env: { ...process.env, DATABASE_URL: db.url, PORT: String(port), DSX_LOG_LEVEL: 'warn', DSX_API_ALLOWED_ORIGINS: 'https://console.example.com', DSX_API_MAX_PAGE_SIZE: '5', DSX_API_DEFAULT_PAGE_SIZE: '5' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  t.teardown(() => { proc.kill('SIGKILL'); });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d;
      if (out.includes('GraphQL API:')) resolve();
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    void exited.then((code) => reject(new Error(`server exited (${code}) before listening: ${out}`)));
  });
  const base = `http://127.0.0.1:${port}`;
  const ws = await refusedUpgrade(base, { origin: 'https://evil.example' });
  t.equal(ws.status, 403, 'a foreign websocket is refused');
  const allowed = await gql(base, '{ allScopes { totalCount } }', { origin: 'https://console.example.com' });
  t.same(JSON.parse(allowed.body), { data: { allScopes: { totalCount: 0 } } });
  t.equal(allowed.headers['access-control-allow-origin'], 'https://console.example.com');
  const big = await gql(base, '{ allScopes(first: 6) { totalCount } }');
  t.match(JSON.parse(big.body), { errors: [{ message: /^allScopes\(first: 6\) asks for 6 rows; the largest page is 5 \(DSX_API_MAX_PAGE_SIZE\)/, extensions: { max: 5 } }] });
  proc.kill('SIGTERM');
  t.equal(await exited, 0, 'stops cleanly');
});
