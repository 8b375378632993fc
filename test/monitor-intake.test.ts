/**
 * The event intake's signed requests: X-DSX-Timestamp + X-DSX-Signature over "<timestamp>.<body>",
 * a timestamp beyond DSX_EVENT_MAX_SKEW_S refused with 401, and each signed request accepted once (a
 * replay is 409), remembered in the database in the transaction that records its events, so the
 * memory holds across API servers (a real `dsx-connect server` process among them) and restarts. And
 * the identity step chosen per integration kind.
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import type pg from 'pg';
import t, { type Test } from 'tap';
import { PROJECT_DIR } from '../src/config.ts';
import { integrationCreate } from '../src/db/sql/catalog.ts';
import { eventSecretEnsure } from '../src/db/sql/monitor.ts';
import { log } from '../src/log.ts';
import type { IdentityOf } from '../src/monitor/events/index.ts';
import { createEventIntake, type IntakeOptions } from '../src/monitor/intake.ts';
import { signEventRequest } from '../src/monitor/intake-auth.ts';
import { freePort } from '../src/testing/ports.ts';
import { createTestDatabase } from './helpers/db.ts';
import { apiServer } from './helpers/graphql.ts';

const SECRET = 'intake-test-secret-0123456789';
const MAIN = path.join(PROJECT_DIR, 'src', 'cli', 'main.ts');

async function setup(t: Test) {
  const db = await createTestDatabase(t);
  const integration = await integrationCreate(db.pool, { name: 'bucket', kind: 'synthetic', settings: { objects: 1 } });
  await eventSecretEnsure(db.pool, integration.id, false, SECRET);
  return { db, integration };
}

/** A real HTTP server on 127.0.0.1 around the intake alone, with options the API server does not expose (a clock). */
async function intakeServer(t: Test, pool: pg.Pool, opts: Partial<IntakeOptions> = {}): Promise<string> {
  const handle = createEventIntake({ pool, log, maxBytes: 1_048_576, ...opts });
  const server = http.createServer((req, res) => void handle(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  }));
  return `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
}

interface Sent {
  status: number;
  body: { error?: string; accepted?: number; eventIds?: number[] };
}

/** POSTs `body` to `base`/events/`id` with `headers`; the same arguments send the same request again. */
async function send(base: string, id: number, body: string, headers: Record<string, string>, method = 'POST'): Promise<Sent> {
  const res = await fetch(`${base}/events/${id}`, { method, headers, body: method === 'OPTIONS' ? undefined : body });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : {} };
}

const nowS = () => Math.floor(Date.now() / 1000);

async function counts(pool: pg.Pool): Promise<{ events: number; signatures: number; jobs: number; audits: number }> {
  const { rows } = await pool.query(
    `select (select count(*)::int from dsx.monitor_events) as events,
            (select count(*)::int from dsx_private.event_signatures) as signatures,
            (select count(*)::int from graphile_worker._private_jobs) as jobs,
            (select count(*)::int from dsx.audit_log where action like 'monitor.%') as audits`,
  );
  return rows[0];
}

const event = (name: string) => JSON.stringify({ objectIdentity: `incoming/${name}`, eventType: 'created' });

t.test('a signed request is accepted once: the same request again is 409 and records nothing', async (t) => {
  const { db, integration } = await setup(t);
  const api = await apiServer(t, db.url);
  const body = event('a.txt');
  const headers = signEventRequest(SECRET, body, nowS());
  const first = await send(api.url, integration.id, body, headers);
  t.equal(first.status, 202, 'accepted');
  t.equal(first.body.accepted, 1);
  const again = await send(api.url, integration.id, body, headers);
  t.equal(again.status, 409, 'the replay is refused');
  t.match(again.body.error, /^replayed request: this signed request \(the same X-DSX-Timestamp and X-DSX-Signature\) was already accepted; nothing was recorded again\. .*eventId/);
  t.same(await counts(db.pool), { events: 1, signatures: 1, jobs: 1, audits: 0 }, 'one event, one ingest job, one remembered signature');
  const { rows } = await db.pool.query(`select extract(epoch from signed_at)::int as signed, extract(epoch from expires_at - signed_at)::int as window from dsx_private.event_signatures`);
  t.same(rows, [{ signed: Number(headers['x-dsx-timestamp']), window: 300 }], 'remembered for the window after its timestamp');

  const later = signEventRequest(SECRET, body, Number(headers['x-dsx-timestamp']) + 1);
  t.equal((await send(api.url, integration.id, body, later)).status, 202, 'the same body signed at another second is another request');
});

t.test('a timestamp more than DSX_EVENT_MAX_SKEW_S from the server clock is 401 saying why, and records nothing', async (t) => {
  const { db, integration } = await setup(t);
  const api = await apiServer(t, db.url);
  const body = event('b.txt');
  const cases: [string, Record<string, string>, number, RegExp | null][] = [
    ['310 s old', signEventRequest(SECRET, body, nowS() - 310), 401, /^stale request: X-DSX-Timestamp \d+ is 3(09|1[01]) s behind the server's clock, beyond the 300 s allowed \(DSX_EVENT_MAX_SKEW_S\): sign each request when you send it/],
    ['310 s ahead', signEventRequest(SECRET, body, nowS() + 310), 401, /is 3(09|1[01]) s ahead of the server's clock/],
    ['not digits', { ...signEventRequest(SECRET, body, nowS()), 'x-dsx-timestamp': '2026-11-28T10:00:00Z' }, 401, /X-DSX-Timestamp must be unix seconds \(digits only\), got "2026-11-28T10:00:00Z"/],
    ['milliseconds', signEventRequest(SECRET, body, Date.now()), 401, /X-DSX-Timestamp must be unix seconds \(digits only\), got "\d{13}" \(milliseconds\? divide by 1000\)/],
    ['a malformed signature', { 'x-dsx-timestamp': String(nowS()), 'x-dsx-signature': 'sha256=xyz' }, 401, /X-DSX-Signature must be one sha256=<64 hex digits>/],
    // Well inside the window on either side (the margin covers a slow machine between signing and checking).
    ['250 s old', signEventRequest(SECRET, body, nowS() - 250), 202, null],
    ['250 s ahead', signEventRequest(SECRET, body, nowS() + 250), 202, null],
  ];
  let accepted = 0;
  for (const [what, headers, status, message] of cases) {
    const before = await counts(db.pool);
    const r = await send(api.url, integration.id, body, headers);
    t.equal(r.status, status, `${what}: ${status}`);
    if (message) {
      t.match(r.body.error, message, `${what}: says why`);
      t.same(await counts(db.pool), before, `${what}: nothing recorded or remembered`);
    } else {
      accepted++;
    }
  }
  t.same(await counts(db.pool), { events: accepted, signatures: accepted, jobs: accepted, audits: 0 });
});

t.test("the database's clock decides as well: a request the API server's slow clock would take is refused when the database says it is too old", async (t) => {
  const { db, integration } = await setup(t);
  // This intake's clock runs 400 s behind the database's.
  const base = await intakeServer(t, db.pool, { now: () => Date.now() - 400_000 });
  const body = event('c.txt');
  const r = await send(base, integration.id, body, signEventRequest(SECRET, body, nowS() - 350));
  t.equal(r.status, 401, 'refused: its entry would already be pruned, so a replay could not be recognized');
  t.match(r.body.error, /^stale request: X-DSX-Timestamp \d+ is more than 300 s old by the database's clock/);
  t.same(await counts(db.pool), { events: 0, signatures: 0, jobs: 0, audits: 0 }, 'nothing recorded');
});

t.test('the memory is in the database: another API server, a restarted one and a dsx-connect server process refuse the replay', async (t) => {
  const { db, integration } = await setup(t);
  const a = await apiServer(t, db.url);
  const b = await apiServer(t, db.url);
  const body = event('d.txt');
  const headers = signEventRequest(SECRET, body, nowS());
  t.equal((await send(a.url, integration.id, body, headers)).status, 202, 'accepted by server A');
  t.equal((await send(b.url, integration.id, body, headers)).status, 409, 'server B, with its own pool, refuses it');

  const restarted = await intakeServer(t, db.pool);
  t.equal((await send(restarted, integration.id, body, headers)).status, 409, 'so does a server started after it');

  // The real command in its own process, with a window of 60 s from the environment.
  const port = await freePort();
  const proc = spawn(process.execPath, [MAIN, 'server', '--port', String(port), '--open'], {
    env: { ...process.env, DATABASE_URL: db.url, DSX_EVENT_MAX_SKEW_S: '60', DSX_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  t.teardown(async () => {
    if (proc.exitCode === null) proc.kill('SIGTERM');
    await exited;
  });
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => { stderr += d; });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    proc.stdout.on('data', (d: Buffer) => {
      out += d;
      if (out.includes('GraphQL API: ')) resolve();
    });
    void exited.then((code) => reject(new Error(`dsx-connect server exited (${code}) before listening: ${stderr}`)));
  });
  const child = `http://127.0.0.1:${port}`;
  t.equal((await send(child, integration.id, body, headers)).status, 409, 'a dsx-connect server process refuses it too');
  const old = await send(child, integration.id, body, signEventRequest(SECRET, body, nowS() - 120));
  t.equal(old.status, 401, 'that process takes its window from DSX_EVENT_MAX_SKEW_S');
  t.match(old.body.error, /beyond the 60 s allowed/);
  const fresh = event('e.txt');
  t.equal((await send(child, integration.id, fresh, signEventRequest(SECRET, fresh, nowS()))).status, 202, 'and accepts a fresh request');
  t.same(await counts(db.pool), { events: 2, signatures: 2, jobs: 2, audits: 0 });
});

t.test('concurrent deliveries of one signed request: exactly one is accepted', async (t) => {
  const { db, integration } = await setup(t);
  const a = await apiServer(t, db.url);
  const b = await intakeServer(t, db.pool);
  const body = event('f.txt');
  const headers = signEventRequest(SECRET, body, nowS());
  const results = await Promise.all(Array.from({ length: 24 }, (_, i) => send(i % 2 ? a.url : b, integration.id, body, headers)));
  const statuses = results.map((r) => r.status).sort();
  t.same(statuses, [202, ...Array<number>(23).fill(409)], 'one 202, 23 replays');
  t.same(await counts(db.pool), { events: 1, signatures: 1, jobs: 1, audits: 0 });
});

t.test('the signature is remembered in the transaction that records the events: a request that failed is not, and its retry goes through', async (t) => {
  const { db, integration } = await setup(t);
  const api = await apiServer(t, db.url);
  // A database that fails inserting events (as with a full disk): installed in this throwaway database only.
  await db.pool.query(`create function public.fail_event_insert() returns trigger language plpgsql as $$
    begin raise exception 'could not extend file: No space left on device' using errcode = '53100'; end $$`);
  await db.pool.query('create trigger fail_event_insert before insert on dsx.monitor_events for each row execute function public.fail_event_insert()');
  t.teardown(() => db.pool.query('drop trigger if exists fail_event_insert on dsx.monitor_events'));
  const body = event('g.txt');
  const headers = signEventRequest(SECRET, body, nowS());
  const failed = await send(api.url, integration.id, body, headers);
  t.equal(failed.status, 503, 'a failing database is 503: retry later');
  t.match(failed.body.error, /^events not recorded, retry later: could not extend file/);
  t.same(await counts(db.pool), { events: 0, signatures: 0, jobs: 0, audits: 0 }, 'the signature was rolled back with the events');
  await db.pool.query('drop trigger fail_event_insert on dsx.monitor_events');
  const retry = await send(api.url, integration.id, body, headers);
  t.equal(retry.status, 202, 'the retry of the same signed request is accepted');
  t.same(await counts(db.pool), { events: 1, signatures: 1, jobs: 1, audits: 0 });
});

t.test('signed requests that record no events are accepted once too: handshakes, the S3 test event, skipped kinds', async (t) => {
  const { db, integration } = await setup(t);
  const api = await apiServer(t, db.url);
  const bodies: [string, string, string][] = [
    ['S3 test event', 'POST', JSON.stringify({ Service: 'Amazon S3', Event: 's3:TestEvent', Time: '2026-11-28T10:00:00.000Z', Bucket: 'b' })],
    ['SNS subscription', 'POST', JSON.stringify({ Type: 'SubscriptionConfirmation', MessageId: 'm-1', TopicArn: 'arn:aws:sns:us-east-1:1:t', Message: 'm', SubscribeURL: 'https://example.invalid/confirm' })],
    ['Event Grid validation', 'POST', JSON.stringify([{ id: 'v', eventType: 'Microsoft.EventGrid.SubscriptionValidationEvent', data: { validationCode: 'code-1' } }])],
    ['a restore only (skipped)', 'POST', JSON.stringify({ Records: [{ eventName: 'ObjectRestore:Completed', s3: { bucket: { name: 'b' }, object: { key: 'k' } } }] })],
    ['CloudEvents OPTIONS', 'OPTIONS', ''],
  ];
  for (const [what, method, body] of bodies) {
    const headers = { ...signEventRequest(SECRET, body, nowS()), 'webhook-request-origin': 'eventgrid.azure.net' };
    const first = await send(api.url, integration.id, body, headers, method);
    t.equal(first.status, 200, `${what}: answered`);
    const before = await counts(db.pool);
    const again = await send(api.url, integration.id, body, headers, method);
    t.equal(again.status, 409, `${what}: its replay is refused`);
    t.same(await counts(db.pool), before, `${what}: the replay recorded nothing`);
  }
  t.same(await counts(db.pool), { events: 0, signatures: bodies.length, jobs: 0, audits: 1 }, 'one signature each; the subscription audited once');
});

t.test('bearer and ?token= requests carry the secret itself: they are not remembered, and the same one is accepted again', async (t) => {
  const { db, integration } = await setup(t);
  const api = await apiServer(t, db.url);
  const body = event('h.txt');
  for (let i = 0; i < 2; i++) {
    t.equal((await send(api.url, integration.id, body, { authorization: `Bearer ${SECRET}` })).status, 202, `bearer, delivery ${i + 1}`);
    const r = await fetch(`${api.url}/events/${integration.id}?token=${SECRET}`, { method: 'POST', body });
    t.equal(r.status, 202, `?token=, delivery ${i + 1}`);
  }
  t.same(await counts(db.pool), { events: 4, signatures: 0, jobs: 4, audits: 0 });
});

t.test('expired signatures are pruned by later requests, 100 at a time, and live ones kept', async (t) => {
  const { db, integration } = await setup(t);
  const api = await apiServer(t, db.url);
  // Entries left by requests of the past: 250 expired, 5 still live.
  await db.pool.query(
    `insert into dsx_private.event_signatures (integration_id, signature, signed_at, expires_at)
     select $1::bigint, sha256(convert_to('old' || g, 'UTF8')), now() - interval '1 hour', now() - interval '1 hour' + interval '300 s' from generate_series(1, 250) g
     union all
     select $1, sha256(convert_to('live' || g, 'UTF8')), now() - interval '10 s', now() + interval '290 s' from generate_series(1, 5) g`,
    [integration.id],
  );
  const expired = async () => (await db.pool.query('select count(*)::int as n from dsx_private.event_signatures where expires_at < now()')).rows[0].n;
  const remaining: number[] = [];
  for (let i = 0; i < 3; i++) {
    const body = event(`p${i}.txt`);
    t.equal((await send(api.url, integration.id, body, signEventRequest(SECRET, body, nowS()))).status, 202);
    remaining.push(await expired());
  }
  t.same(remaining, [150, 50, 0], 'each request prunes up to 100 expired entries');
  t.equal((await counts(db.pool)).signatures, 5 + 3, 'the live entries and the three new ones remain');
});

t.test('the identity step is chosen per integration kind', async (t) => {
  const { db, integration: plain } = await setup(t);
  const s3 = await integrationCreate(db.pool, { name: 's3', kind: 's3', settings: { bucket: 'bkt' } });
  await eventSecretEnsure(db.pool, s3.id, false, SECRET);
  const verbatim: IdentityOf = (raw) => raw;
  const kinds: string[] = [];
  const base = await intakeServer(t, db.pool, { identityFor: ({ kind }) => (kinds.push(kind), kind === 's3' ? verbatim : undefined) });
  const key = '//odd/../key';
  const body = JSON.stringify({ Records: [{ eventName: 'ObjectCreated:Put', s3: { bucket: { name: 'bkt' }, object: { key, sequencer: '01' } } }] });
  const bearer = { authorization: `Bearer ${SECRET}` };
  const toS3 = await send(base, s3.id, body, bearer);
  t.equal(toS3.status, 202, 'an s3 integration takes the key verbatim');
  const { rows } = await db.pool.query('select object_identity from dsx.monitor_events where integration_id = $1', [s3.id]);
  t.same(rows, [{ object_identity: key }]);
  const toPlain = await send(base, plain.id, body, bearer);
  t.equal(toPlain.status, 400, 'another kind keeps the default, which refuses it');
  t.match(toPlain.body.error, /^Records\.0\.s3\.object\.key: path "\/\/odd\/\.\.\/key" is absolute/);
  t.same(kinds, ['s3', 'synthetic'], 'asked with each integration kind');
});

t.test("the README's signing recipe signs a request the intake accepts once", async (t) => {
  const { db, integration } = await setup(t);
  const api = await apiServer(t, db.url);
  const body = '{"objectIdentity": "incoming/report.pdf", "eventType": "created", "size": 1234, "eventId": "evt-1"}';
  const ts = String(nowS());
  // The README's line, read from the README itself, as a shell runs it (the secret reaches node through
  // the environment, never a command line).
  const readme = fs.readFileSync(path.join(PROJECT_DIR, 'README.md'), 'utf8');
  const line = readme.split('\n').find((l) => l.startsWith("sig=$(printf '%s.%s' \"$ts\" \"$body\" |"));
  t.ok(line, 'the README has the signing line');
  const recipe = `${line!}; printf '%s' "$sig"`;
  const { stdout } = await promisify(execFile)('sh', ['-c', recipe], {
    env: { ...process.env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH}`, ts, body, SECRET },
  });
  const headers = { 'x-dsx-timestamp': ts, 'x-dsx-signature': `sha256=${stdout.trim()}` };
  t.same(headers, signEventRequest(SECRET, body, Number(ts)), 'the same headers as signEventRequest');
  t.equal((await send(api.url, integration.id, body, headers)).status, 202, 'accepted');
  t.equal((await send(api.url, integration.id, body, headers)).status, 409, 'once');
});
