import net from 'node:net';
import path from 'node:path';
import t from 'tap';
import { PROJECT_DIR } from '../src/config.ts';
import { createTestDatabase } from './helpers/db.ts';
import { JWT_SECRET, token } from './helpers/graphql.ts';
import { start } from './helpers/processes.ts';

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

t.test('dsx-connect server serves GraphQL, GraphiQL, health and readiness, and stops cleanly on SIGTERM', async (t) => {
  const db = await createTestDatabase(t);
  const port = await freePort();
  const server = start(t, process.execPath, [path.join(PROJECT_DIR, 'bin', 'dsx-connect.js'), 'server'], {
    env: { ...process.env, DATABASE_URL: db.url, PORT: String(port), DSX_JWT_SECRET: JWT_SECRET, DSX_LOG_LEVEL: 'warn' },
  });
  await server.waitForStdout(/GraphQL API:/, 30_000);
  const out = () => server.stdout() + server.stderr();
  const base = `http://127.0.0.1:${port}`;
  t.match(out(), `${base}/graphql`);
  t.same(await (await fetch(`${base}/healthz`)).json(), { status: 'ok' });
  t.match(await (await fetch(`${base}/readyz`)).json(), { status: 'ready', scanner: { state: 'unknown' } });
  const page = await fetch(`${base}/`, { headers: { accept: 'text/html' } });
  t.match(await page.text(), /ruru|graphiql/i, 'GraphiQL (Ruru) at /');
  const post = (bearer?: string) =>
    fetch(`${base}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) },
      body: JSON.stringify({ query: '{ allFullScans { totalCount } }' }),
    }).then((r) => r.json());
  const anonymous = await fetch(`${base}/graphql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ query: '{ allFullScans { totalCount } }' }),
  });
  t.equal(anonymous.status, 401, 'no token: 401');
  t.equal(anonymous.headers.get('www-authenticate'), 'Bearer');
  t.same(await anonymous.json(), {
    errors: [{ message: 'authentication required: send "Authorization: Bearer <token>" (a JWT or an API token)', extensions: { code: 'UNAUTHENTICATED' } }],
  });
  t.match(await post('not-a-jwt'), { errors: [{ message: /authentication failed: invalid token/, extensions: { code: 'UNAUTHENTICATED' } }] });
  t.same(await post(await token('viewer')), { data: { allFullScans: { totalCount: 0 } } });
  server.proc.kill('SIGTERM');
  t.match(await server.exited(), { code: 0 }, 'exits 0 on SIGTERM');
  t.notMatch(out(), /GRAPHILE_ENV/, 'no GRAPHILE_ENV warning at start');
  t.notMatch(out(), /SafeError|at context/, 'a refused token logs no stack trace');
});
