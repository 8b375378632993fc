/**
 * Credentials never come back out: integration credentials, a webhook secret and the DSXA token, all
 * carrying one unique marker, are written through the real CLI and the GraphQL API; then a scan runs
 * with debug logs in real worker and API server processes, errors that involve the integration are
 * provoked (bad credential input, an unknown integration, an integration whose connector fails), and
 * everything an operator can see is collected: every CLI and process output, every GraphQL answer
 * (errors included) over every connection of the schema, the audit log, every table of schema `dsx`,
 * the queue, and what the webhook receiver got. The marker must appear in none of it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import t, { type Test } from 'tap';
import { PROJECT_DIR } from '../src/config.ts';
import { signJwt } from '../src/server/auth.ts';
import { EICAR } from '../src/testing/fixtures.ts';
import { freePort } from '../src/testing/ports.ts';
import { createTestDatabase } from './helpers/db.ts';
import { emulator } from './helpers/pipeline.ts';
import { emitted, notifications, waitFor, within } from './helpers/wait.ts';

const BIN = path.join(PROJECT_DIR, 'bin', 'dsx-connect.js');
const MARKER = `mk${crypto.randomBytes(8).toString('hex')}`;
const CREDENTIAL = `${MARKER}-integration-credential`;
const HOOK_SECRET = `${MARKER}-webhook-secret`;
const DSXA_TOKEN = `${MARKER}-dsxa-token`;
const JWT_SECRET = 'secrets-test-jwt-secret-long-enough-for-hs256';

/** Everything that left a process or the API, labelled, to search for the marker at the end. */
const seen: { what: string; text: string }[] = [];
const record = (what: string, value: unknown) => seen.push({ what, text: typeof value === 'string' ? value : JSON.stringify(value) });

function cli(env: NodeJS.ProcessEnv, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => {
      record(`dsx-connect ${args.join(' ')} (stdout)`, stdout);
      record(`dsx-connect ${args.join(' ')} (stderr)`, stderr);
      resolve({ code: code ?? 1, stdout, stderr });
    });
  });
}

/** A long-running dsx-connect process whose output is kept; `output` emits 'data' as it arrives. */
function daemon(t: Test, env: NodeJS.ProcessEnv, ...args: string[]) {
  const child: ChildProcess = spawn(process.execPath, [BIN, ...args], { env });
  const out = { text: '' };
  const output = new EventEmitter();
  const collect = (d: Buffer) => {
    out.text += d;
    output.emit('data');
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    child.kill('SIGTERM');
    await within(exited, 10_000, `dsx-connect ${args[0]} to stop on SIGTERM`).catch(() => {
      child.kill('SIGKILL');
      return exited;
    });
    record(`dsx-connect ${args.join(' ')} (output)`, out.text);
  };
  t.teardown(stop);
  return { out, output, stop };
}

t.test('credentials, webhook secrets and the DSXA token never appear in logs, errors, audit entries or API results', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t, { token: DSXA_TOKEN });
  const dir = t.testdir({ 'clean.txt': 'hello', 'sub': { 'eicar.com': EICAR, 'other.txt': 'world' } });

  const received: { headers: http.IncomingHttpHeaders; body: string }[] = [];
  const deliveries = new EventEmitter();
  const hook = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      received.push({ headers: req.headers, body });
      res.end('ok');
      deliveries.emit('request');
    });
  });
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => hook.close(() => r())));
  const hookUrl = `http://127.0.0.1:${(hook.address() as net.AddressInfo).port}/hook`;

  const env = {
    ...process.env,
    DATABASE_URL: db.url,
    DSXA_URL: emu.url,
    DSXA_TOKEN,
    DSX_JWT_SECRET: JWT_SECRET,
    DSX_LOG_LEVEL: 'debug',
    DSX_DEBUG: '1',
    DSX_WEBHOOK_ALLOW_PRIVATE: 'true',
    DSX_PAGE_SIZE: '2',
  };

  // Catalog through the CLI, including commands that fail (independent commands run side by side).
  const port = await freePort();
  const server = daemon(t, env, 'server', '--port', String(port));
  await Promise.all([
    (async () => {
      t.equal((await cli(env, 'integration', 'add', '--name', 'share', '--kind', 'filesystem', '--root', dir)).code, 0);
      t.equal((await cli(env, 'scope', 'add', '--integration', 'share', '--name', 'docs', '--root', '', '--policy', '{"malicious": {"remediation": "tag", "notify": true}}')).code, 0);
    })(),
    (async () => {
      // The secret through the environment: the CLI refuses secrets as command-line values.
      const withSecret = { ...env, DSX_CHANNEL_SECRET: HOOK_SECRET };
      t.equal((await cli(withSecret, 'channel', 'add', '--name', 'ops', '--url', hookUrl)).code, 0);
      t.not((await cli(withSecret, 'channel', 'add', '--name', 'ops', '--url', hookUrl)).code, 0, 'a duplicate channel fails');
    })(),
    (async () => t.not((await cli({ ...env, DSX_CHANNEL_SECRET: HOOK_SECRET }, 'channel', 'add', '--name', 'ftp', '--url', 'ftp://x')).code, 0, 'a bad URL fails'))(),
  ]);

  // Credentials through the API (the CLI has no command for them), then bad inputs that involve them.
  await waitFor(() => server.out.text.includes('GraphQL API:'), 'the API server to start', 60_000, emitted(server.output, 'data'));
  const operator = await signJwt(JWT_SECRET, { role: 'operator', sub: 'secrets-test' }, 600);
  const viewer = await signJwt(JWT_SECRET, { role: 'viewer', sub: 'secrets-test' }, 600);
  async function gql(query: string, variables: Record<string, unknown> = {}, bearer = operator) {
    const res = await fetch(`http://127.0.0.1:${port}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${bearer}` },
      body: JSON.stringify({ query, variables }),
    });
    const body = (await res.json()) as { data?: any; errors?: { message: string }[] };
    record(`GraphQL ${query.slice(0, 60)}`, body);
    return body;
  }
  const setCredentials = `mutation($id: BigInt!, $c: JSON!) { setIntegrationCredentials(input: {integrationId: $id, credentials: $c}) { ok } }`;
  const share = (await gql('{ allIntegrations(condition: {name: "share"}) { nodes { rowId } } }')).data.allIntegrations.nodes[0].rowId;
  const good = await gql(setCredentials, { id: share, c: { password: CREDENTIAL, token: CREDENTIAL, nested: { secret_access_key: CREDENTIAL } } });
  t.same(good.data, { setIntegrationCredentials: { ok: true } }, 'credentials set');
  const created = await gql(
    `mutation($c: JSON) { createIntegration(input: {name: "bucket", kind: "s3", settings: {bucket: "bkt"}, credentials: $c}) { integration { rowId } } }`,
    { c: { secret_access_key: CREDENTIAL } },
  );
  t.notOk(created.errors, 'an s3 integration with credentials');
  const bucket = created.data.createIntegration.integration.rowId;
  const refusals = [
    await gql(setCredentials, { id: share, c: CREDENTIAL }), // not an object
    await gql(setCredentials, { id: share, c: [CREDENTIAL] }),
    await gql(setCredentials, { id: '424242', c: { password: CREDENTIAL } }), // unknown integration
    await gql(setCredentials, { id: share, c: { password: CREDENTIAL } }, viewer), // not allowed
    await gql(`mutation($c: JSON) { createIntegration(input: {name: "share", kind: "s3", settings: {}, credentials: $c}) { integration { rowId } } }`, { c: { k: CREDENTIAL } }),
    await gql(`mutation($c: JSON) { createIntegration(input: {name: "other", kind: "s3", settings: {}, credentials: $c}) { integration { rowId } } }`, { c: CREDENTIAL }),
  ];
  for (const r of refusals) t.ok(r.errors?.length, `refused: ${r.errors?.[0]?.message}`);
  t.match(refusals[0]!.errors, [{ message: /credentials must be a JSON object/ }], 'a non-object is refused before it reaches a table');

  // A scan with notifications, and a scan of the integration whose connector fails, under a debug-level worker.
  const worker = daemon(t, env, 'worker', '--concurrency', '4');
  t.equal((await cli(env, 'scope', 'add', '--integration', 'bucket', '--name', 'bucketscope', '--root', '')).code, 0);
  const [bucketScan, scanId] = (await Promise.all([cli(env, 'scan', 'start', 'bucketscope'), cli(env, 'scan', 'start', 'docs')])).map((r) => r.stdout.trim()) as [string, string];
  const status = await cli(env, 'scan', 'status', scanId, '--wait', '--json');
  t.match(JSON.parse(status.stdout), { status: 'completed', discovered: 3, finalized: 3, outcomes: { clean: 2, malicious: 1 } });
  await waitFor(() => received.length === 1, 'the webhook delivery', 30_000, emitted(deliveries, 'request'));
  // The s3 connector refuses credentials of the wrong shape: the scan fails at once, naming the field (never its value).
  await waitFor(
    async () => (await db.pool.query(`select 1 from dsx.full_scans where id = $1 and status = 'failed' and error ~ 'credentials'`, [bucketScan])).rowCount === 1,
    'the s3 enumeration to fail',
    30_000,
    notifications(db.pool, 'dsx_full_scan'),
  );
  const [verify] = await Promise.all([
    cli(env, 'scan', 'verify', scanId),
    cli(env, 'integration', 'list', '--json'),
    cli(env, 'results', '--scope', 'docs', '--json'),
  ]);
  t.equal(verify.code, 0, 'the scan verifies');

  // Everything GraphQL shows, as operator and as viewer: every scalar of every node of every connection.
  const schema = await gql(`{ __schema { queryType { fields { name type { name kind } } } } }`);
  const connections = schema.data.__schema.queryType.fields.filter((f: any) => f.name.startsWith('all') && f.type.name?.endsWith('Connection'));
  t.ok(connections.length >= 8, `${connections.length} connections`);
  for (const c of connections) {
    const nodeType = (await gql(`{ __type(name: "${c.type.name}") { fields { name type { kind ofType { name kind ofType { name kind } } } } } }`)).data.__type.fields
      .find((f: any) => f.name === 'nodes').type.ofType.ofType?.name ?? null;
    const fields = (await gql(`{ __type(name: "${nodeType}") { fields { name args { name } type { kind name ofType { kind name ofType { kind name } } } } } }`)).data.__type.fields
      .filter((f: any) => {
        const leaf = f.type.kind === 'NON_NULL' ? f.type.ofType : f.type;
        return f.args.length === 0 && (leaf.kind === 'SCALAR' || leaf.kind === 'ENUM');
      })
      .map((f: any) => f.name);
    for (const who of [operator, viewer]) {
      const all = await gql(`{ ${c.name} { totalCount nodes { ${fields.join(' ')} } } }`, {}, who);
      t.notOk(all.errors, `${c.name}: ${all.errors?.[0]?.message ?? `${all.data[c.name].totalCount} rows`}`);
    }
  }
  await gql(`{ verifyFullScan(fullScanId: "${scanId}") { nodes { checkName ok detail } } }`);

  await worker.stop();
  await server.stop();
  const q = async (what: string, sql: string) => record(what, (await db.pool.query(sql)).rows);
  await q('dsx.audit_log', 'select * from dsx.audit_log order by id');
  const { rows: tables } = await db.pool.query(`select format('%I.%I', table_schema, table_name) as name from information_schema.tables where table_schema = 'dsx'`);
  for (const { name } of tables) await q(name, `select * from ${name}`);
  await q('graphile_worker jobs', 'select payload, last_error, key from graphile_worker._private_jobs');
  record('webhook requests', received);

  // The test can see a leak: the secrets were stored, the logs are debug logs, the failure was logged.
  const stored = (await db.pool.query(`select credentials::text as c from dsx_private.integration_credentials`)).rows.map((r) => r.c).join();
  t.ok(stored.includes(CREDENTIAL), 'the credentials are stored (in dsx_private)');
  const workerLog = seen.find((s) => s.what.startsWith('dsx-connect worker'))!.text;
  t.match(workerLog, /"level":20/, 'the worker logged at debug level');
  t.match(workerLog, /S3 integration credentials: credentials.accessKeyId/, 'the failing integration was logged');
  t.ok(received[0]!.headers['x-dsx-signature'], 'the webhook was signed (with the secret, which is not sent)');
  t.ok(seen.length > 50, `${seen.length} outputs collected`);

  const leaks = seen.filter((s) => s.text.includes(MARKER));
  for (const leak of leaks) {
    const at = leak.text.indexOf(MARKER);
    t.fail(`the marker leaked in ${leak.what}: ...${leak.text.slice(Math.max(0, at - 120), at + 60)}...`);
  }
  t.equal(leaks.length, 0, 'no output carries the marker');
});
