/**
 * Monitoring over HTTP: the event intake of a real API server (every accepted format, authentication,
 * malformed and oversized bodies), ingestion by real workers into the same scan -> finalize path
 * (scope resolution, filters, deletes, debouncing, counters), idempotent ingest jobs, priority over a
 * running full scan, and full-scan and monitoring results of one object kept side by side.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { integrationCreate, scopeCreate } from '../src/db/sql/catalog.ts';
import { fullScanStart } from '../src/db/sql/full-scans.ts';
import { eventSecretEnsure } from '../src/db/sql/monitor.ts';
import { EICAR_TEST_STRING } from '../src/connectors/eicar.ts';
import { signBody } from '../src/notify/webhook.ts';
import { signEventRequest } from '../src/monitor/intake-auth.ts';
import { createTestDatabase } from './helpers/db.ts';
import { apiServer, token } from './helpers/graphql.ts';
import type { WorkerHandle } from '../src/worker/run.ts';
import { emulator, queuedJobs, scanEvents, Stepper, testConfig, waitFor, waitForEmptyQueue, waitForScan, waitForScanJobsGone, workers } from './helpers/pipeline.ts';
import { jobEvents } from './helpers/wait.ts';

const SECRET = 'monitor-test-secret-0123456789';

async function setup(t: Test) {
  const db = await createTestDatabase(t);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-mon-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.mkdirSync(path.join(dir, 'watched', 'docs'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'quiet'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'other'), { recursive: true });
  const integration = await integrationCreate(db.pool, { name: 'share', kind: 'filesystem', settings: { root: dir } });
  const scope = await scopeCreate(db.pool, {
    integrationId: integration.id, name: 'watched', root: 'watched', include: [], exclude: ['**/*.tmp'], policy: {}, monitor: true,
  });
  const quiet = await scopeCreate(db.pool, {
    integrationId: integration.id, name: 'quiet', root: 'quiet', include: [], exclude: [], policy: {}, monitor: false,
  });
  await eventSecretEnsure(db.pool, integration.id, false, SECRET);
  const api = await apiServer(t, db.url);
  const post = (body: unknown, opts: { auth?: 'bearer' | 'hmac' | 'query' | 'none' | 'wrong'; integrationId?: number; raw?: string; method?: string } = {}) => {
    const text = opts.raw ?? JSON.stringify(body);
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    const auth = opts.auth ?? 'bearer';
    if (auth === 'bearer') headers.authorization = `Bearer ${SECRET}`;
    if (auth === 'wrong') headers.authorization = 'Bearer not-the-secret-at-all';
    if (auth === 'hmac') Object.assign(headers, signEventRequest(SECRET, text, Date.now() / 1000));
    const q = auth === 'query' ? `?token=${encodeURIComponent(SECRET)}` : '';
    return fetch(`${api.url}/events/${opts.integrationId ?? integration.id}${q}`, { method: opts.method ?? 'POST', headers, body: opts.method === 'OPTIONS' ? undefined : text });
  };
  const write = (rel: string, content: string) => {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), content);
  };
  return { db, dir, integration, scope, quiet, api, post, write };
}

async function count(pool: import('pg').Pool, sql: string, params: unknown[] = []): Promise<number> {
  const { rows } = await pool.query(`select count(*)::int as n from (${sql}) x`, params);
  return rows[0].n;
}

interface EventRow {
  id: number;
  source: string;
  status: string;
  reason: string | null;
  object_identity: string;
  scope_id: number | null;
}

async function events(pool: import('pg').Pool): Promise<EventRow[]> {
  const { rows } = await pool.query('select id::int, source, status, reason, object_identity, scope_id::int from dsx.monitor_events order by id');
  return rows as EventRow[];
}

/** Waits until the monitoring result of event `eventId` is finalized (re-checked as jobs of `w` complete); returns it. */
async function monitorResult(pool: import('pg').Pool, w: WorkerHandle, eventId: number) {
  let row: any;
  await waitFor(async () => {
    const { rows } = await pool.query(
      `select r.*, r.id::int as id from dsx.scan_results r where r.source_type = 'monitor' and r.source_entity_id = $1 and r.state = 'finalized'`,
      [String(eventId)],
    );
    row = rows[0];
    return !!row;
  }, `the scan of event ${eventId}`, 20_000, jobEvents(w));
  return row;
}

// Real-shaped samples (as AWS and Azure document and send them), pointing at files of the test share.
const s3Records = (key: string, sequencer: string) => ({
  Records: [
    {
      eventVersion: '2.1', eventSource: 'aws:s3', awsRegion: 'us-east-1', eventTime: '2026-11-28T10:00:00.000Z',
      eventName: 'ObjectCreated:Put', userIdentity: { principalId: 'AWS:AIDAEXAMPLE' },
      requestParameters: { sourceIPAddress: '203.0.113.7' },
      responseElements: { 'x-amz-request-id': 'C3D13FE58DE4C810', 'x-amz-id-2': 'FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD' },
      s3: {
        s3SchemaVersion: '1.0', configurationId: 'dsx-connect',
        bucket: { name: 'share-bucket', ownerIdentity: { principalId: 'A3NL1KOZZKExample' }, arn: 'arn:aws:s3:::share-bucket' },
        object: { key, size: 12, eTag: '0123456789abcdef0123456789abcdef', sequencer },
      },
    },
  ],
});

t.test('every event format is accepted, authenticated, and scanned through the pipeline', async (t) => {
  const { db, post, write, scope } = await setup(t);
  const emu = await emulator(t);
  const w = await workers(t, db.pool, { dsxaUrl: emu.url, config: testConfig({ monitorDebounceMs: 200 }) });

  write('watched/docs/a file.txt', 'plain s3');
  write('watched/sns.txt', 'via sns');
  write('watched/eb.txt', 'via eventbridge');
  write('watched/grid/blob.txt', 'via event grid');
  write('watched/cloud.txt', 'via cloudevents');
  write('watched/generic.txt', EICAR_TEST_STRING);

  const samples: [string, unknown, 'bearer' | 'hmac' | 'query'][] = [
    ['s3', s3Records('watched/docs/a+file.txt', '0055AED6DCD90281E5'), 'bearer'],
    ['sns', {
      Type: 'Notification', MessageId: '22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324', TopicArn: 'arn:aws:sns:us-east-1:123456789012:dsx',
      Subject: 'Amazon S3 Notification', Message: JSON.stringify(s3Records('watched/sns.txt', '0055AED6DCD90281E6')),
      Timestamp: '2026-11-28T10:00:01.000Z', SignatureVersion: '1', Signature: 'EXAMPLE', SigningCertURL: 'https://sns.us-east-1.amazonaws.com/x.pem',
    }, 'query'],
    ['eventbridge', {
      version: '0', id: '17793124-05d4-b198-2fde-7ededc63b103', 'detail-type': 'Object Created', source: 'aws.s3',
      account: '111122223333', time: '2026-11-28T10:00:02Z', region: 'us-east-1', resources: ['arn:aws:s3:::share-bucket'],
      detail: { version: '0', bucket: { name: 'share-bucket' }, object: { key: 'watched/eb.txt', size: 15, etag: 'b1946ac92492d2347c6235b4d2611184', sequencer: '617f08299329d189' }, 'request-id': 'N4N7GDK58NMKJ12R', requester: '123456789012', 'source-ip-address': '1.2.3.4', reason: 'PutObject' },
    }, 'bearer'],
    ['eventgrid', [{
      topic: '/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct',
      subject: '/blobServices/default/containers/share/blobs/watched/grid/blob.txt', eventType: 'Microsoft.Storage.BlobCreated',
      eventTime: '2026-11-28T10:00:03.000Z', id: '831e1650-001e-001b-66ab-eeb76e069631',
      data: { api: 'PutBlockList', clientRequestId: '6d79dbfb-0e37-4fc4-981f-442c9ca89e04', requestId: '831e1650-001e-001b-66ab-eeb76e000000', eTag: '0x8D4BCC2E4835CD0', contentType: 'text/plain', contentLength: 14, blobType: 'BlockBlob', url: 'https://acct.blob.core.windows.net/share/watched/grid/blob.txt', sequencer: '00000000000004420000000000028963', storageDiagnostics: { batchId: 'b68529f3-68cd-4744-baa4-3c0498ec19f0' } },
      dataVersion: '', metadataVersion: '1',
    }], 'query'],
    ['eventgrid', [{
      specversion: '1.0', type: 'Microsoft.Storage.BlobCreated', source: '/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/acct',
      subject: '/blobServices/default/containers/share/blobs/watched/cloud.txt', id: '9aeb0fdf-c01e-0131-0922-9eb54906e209', time: '2026-11-28T10:00:04.000Z',
      data: { api: 'PutBlob', eTag: '0x8D9F2A1B2C3D4E5', contentType: 'text/plain', contentLength: 15, blobType: 'BlockBlob', url: 'https://acct.blob.core.windows.net/share/watched/cloud.txt' },
    }], 'hmac'],
    ['generic', { objectIdentity: 'watched/generic.txt', eventType: 'created', size: 68, occurredAt: '2026-11-28T10:00:05Z', eventId: 'gen-1' }, 'bearer'],
  ];
  const ids: number[] = [];
  for (const [source, body, auth] of samples) {
    const res = await post(body, { auth });
    t.equal(res.status, 202, `${source} sample accepted`);
    const json = (await res.json()) as { accepted: number; eventIds: number[] };
    t.equal(json.accepted, 1, `${source}: one event`);
    ids.push(json.eventIds[0]!);
  }
  const rows = await events(db.pool);
  t.same(rows.map((r) => r.source), ['s3', 'sns', 'eventbridge', 'eventgrid', 'eventgrid', 'generic'], 'sources recorded');
  t.same(
    rows.map((r) => r.object_identity),
    ['watched/docs/a file.txt', 'watched/sns.txt', 'watched/eb.txt', 'watched/grid/blob.txt', 'watched/cloud.txt', 'watched/generic.txt'],
    'identities decoded (S3 keys are URL-encoded)',
  );
  for (const id of ids) {
    const r = await monitorResult(db.pool, w, id);
    t.equal(r.source_type, 'monitor');
    t.equal(Number(r.scope_id), scope.id);
    t.equal(r.full_scan_id, null, 'not part of a full scan');
    t.equal(r.outcome, r.object_identity === 'watched/generic.txt' ? 'malicious' : 'clean', `${r.object_identity} scanned: ${r.outcome}`);
  }
  const { rows: stats } = await db.pool.query('select events_received::int, events_scanned::int from dsx.monitor_stats where scope_id = $1', [scope.id]);
  t.same(stats[0], { events_received: 6, events_scanned: 6 }, 'counters');

  // A redelivered notification (same S3 sequencer) is recognized and not ingested twice.
  const again = await post(s3Records('watched/docs/a+file.txt', '0055AED6DCD90281E5'));
  t.equal(again.status, 202);
  t.match(await again.json(), { accepted: 0, duplicates: 1 });
  t.equal((await events(db.pool)).length, 6, 'no new event row');
});

t.test('handshakes: Event Grid validation, CloudEvents OPTIONS, SNS subscription, S3 test event', async (t) => {
  const { db, post } = await setup(t);
  const validation = await post([{
    id: '2d1781af-3a4c-4d7c-bd0c-e34b19da4e66', topic: '/subscriptions/x', subject: '', data: { validationCode: '512d38b6-c7b8-40c8-89fe-f46f9e9622b6', validationUrl: 'https://rp-eastus2.eventgrid.azure.net:553/eventsubscriptions/x/validate?id=512d38b6' },
    eventType: 'Microsoft.EventGrid.SubscriptionValidationEvent', eventTime: '2026-11-28T10:00:00Z', metadataVersion: '1', dataVersion: '1',
  }], { auth: 'query' });
  t.equal(validation.status, 200);
  t.same(await validation.json(), { validationResponse: '512d38b6-c7b8-40c8-89fe-f46f9e9622b6' }, 'validation code echoed');

  const options = await post(null, { auth: 'query', method: 'OPTIONS' }).then(async (r) => r);
  t.equal(options.status, 200);

  const sub = await post({
    Type: 'SubscriptionConfirmation', MessageId: '165545c9-2a5c-472c-8df2-7ff2be2b3b1b', Token: '2336412f37f...', TopicArn: 'arn:aws:sns:us-west-2:123456789012:MyTopic',
    Message: 'You have chosen to subscribe to the topic arn:aws:sns:us-west-2:123456789012:MyTopic.', SubscribeURL: 'https://example.invalid/?Action=ConfirmSubscription',
    Timestamp: '2026-11-28T10:00:00.000Z', SignatureVersion: '1', Signature: 'EXAMPLE', SigningCertURL: 'https://sns.us-west-2.amazonaws.com/x.pem',
  }, { auth: 'query' });
  t.equal(sub.status, 200);
  t.same(await sub.json(), { received: 'SubscriptionConfirmation', confirming: false }, 'a non-AWS SubscribeURL is not fetched');
  t.equal(await count(db.pool, `select 1 from dsx.audit_log where action = 'monitor.sns_subscription_confirmation'`), 1, 'recorded for the operator');

  const test = await post({ Service: 'Amazon S3', Event: 's3:TestEvent', Time: '2026-11-28T10:00:00.000Z', Bucket: 'share-bucket', RequestId: 'x', HostId: 'y' });
  t.equal(test.status, 200);
  t.equal((await events(db.pool)).length, 0, 'handshakes record no events');
});

t.test('refused requests: authentication, unknown integration, malformed and oversized bodies change nothing', async (t) => {
  const { db, post, integration, api } = await setup(t);
  const other = await integrationCreate(db.pool, { name: 'nosecret', kind: 'synthetic', settings: { objects: 1 } });
  const good = { objectIdentity: 'watched/x.txt', eventType: 'created' };
  const cases: [string, Promise<Response>, number, RegExp][] = [
    ['no credentials', post(good, { auth: 'none' }), 401, /missing or invalid credentials/],
    ['wrong bearer', post(good, { auth: 'wrong' }), 401, /invalid credentials/],
    ['bad signature', fetch(`${api.url}/events/${integration.id}`, { method: 'POST', headers: signEventRequest('some-other-secret-xxxxxxxx', JSON.stringify(good), Date.now() / 1000), body: JSON.stringify(good) }), 401, /invalid credentials: X-DSX-Signature is not the HMAC/],
    ['signature of another body', fetch(`${api.url}/events/${integration.id}`, { method: 'POST', headers: signEventRequest(SECRET, '{}', Date.now() / 1000), body: JSON.stringify(good) }), 401, /invalid credentials/],
    ['a signature of the body alone (no timestamp)', fetch(`${api.url}/events/${integration.id}`, { method: 'POST', headers: { 'x-dsx-signature': signBody(SECRET, JSON.stringify(good)) }, body: JSON.stringify(good) }), 401, /needs X-DSX-Timestamp/],
    ['a bad signature beside a good bearer token', fetch(`${api.url}/events/${integration.id}`, { method: 'POST', headers: { authorization: `Bearer ${SECRET}`, ...signEventRequest(SECRET, '{}', Date.now() / 1000) }, body: JSON.stringify(good) }), 401, /X-DSX-Signature is not the HMAC/],
    ['integration without a secret', post(good, { integrationId: other.id }), 403, /no event secret/],
    ['unknown integration', post(good, { integrationId: 999999 }), 404, /unknown integration id 999999/],
    ['not an id', fetch(`${api.url}/events/abc`, { method: 'POST', body: '{}' }), 404, /numeric id/],
    ['GET', fetch(`${api.url}/events/${integration.id}`), 405, /not allowed/],
    ['invalid JSON', post(null, { raw: '{"objectIdentity": ' }), 400, /not valid JSON/],
    ['unknown shape', post({ hello: 'world' }), 400, /unrecognized event format/],
    ['bad eventType', post({ objectIdentity: 'watched/x.txt', eventType: 'renamed' }), 400, /eventType/],
    ['extra field', post({ objectIdentity: 'watched/x.txt', eventType: 'created', bucket: 'b' }), 400, /bucket|unrecognized key/i],
    ['path escape', post({ objectIdentity: '../etc/passwd', eventType: 'created' }), 400, /"\.\." segment/],
    ['absolute path', post({ objectIdentity: '/etc/passwd', eventType: 'created' }), 400, /absolute/],
    ['one bad event among good ones', post({ events: [good, { objectIdentity: 'watched/y', eventType: 'created', size: -1 }] }), 400, /events\.1\.size/],
    ['empty list', post([]), 400, /no events/],
    ['S3 record without key', post({ Records: [{ eventName: 'ObjectCreated:Put', s3: { bucket: { name: 'b' }, object: {} } }] }), 400, /Records\.0\.s3\.object\.key/],
    ['bad URL encoding', post(s3Records('watched/%E0%A4%A.txt', '01')), 400, /URL encoding/],
    ['Event Grid subject of another service', post([{ id: '1', eventType: 'Microsoft.Storage.BlobCreated', subject: '/queueServices/default/queues/q', data: {} }]), 400, /subject/],
    ['SNS message that is not JSON', post({ Type: 'Notification', MessageId: 'm', TopicArn: 'arn:x', Message: 'hello' }, { auth: 'query' }), 400, /does not carry JSON/],
    // Permanently bad values PostgreSQL would refuse: 400 naming the field (so senders stop retrying), not 503.
    ['NUL in an etag', post({ objectIdentity: 'watched/x.txt', eventType: 'created', etag: 'a\u0000b' }), 400, /^invalid event at etag: contains a NUL/],
    ['unpaired surrogate in an event id', post(null, { raw: '{"objectIdentity": "watched/x.txt", "eventType": "created", "eventId": "id-\\ud800"}' }), 400, /^invalid event at eventId: contains an unpaired UTF-16 surrogate/],
    ['unpaired surrogate in an identity', post(null, { raw: '{"objectIdentity": "watched/\\udfff.txt", "eventType": "created"}' }), 400, /^objectIdentity: object identity contains an unpaired/],
    ['NUL in an S3 key (%00)', post(s3Records('watched/a%00b.txt', '02')), 400, /Records\.0\.s3\.object\.key: object key contains a NUL/],
    ['year 200000', post({ objectIdentity: 'watched/x.txt', eventType: 'created', occurredAt: '+200000-01-01T00:00:00Z' }), 400, /^invalid event at occurredAt: must be an RFC 3339 timestamp/],
    ['month 13', post([{ id: 'g1', eventType: 'Microsoft.Storage.BlobCreated', subject: '/blobServices/default/containers/c/blobs/watched/x', eventTime: '2026-13-45T10:00:00Z' }], { auth: 'query' }), 400, /^invalid event at 0\.eventTime: month 13 is out of range/],
    ['February 30', post({ ...s3Records('watched/x.txt', '03'), Records: [{ ...s3Records('watched/x.txt', '03').Records[0], eventTime: '2026-02-30T00:00:00Z' }] }), 400, /Records\.0\.eventTime: day 30 is out of range/],
    ['an offset PostgreSQL refuses', post({ objectIdentity: 'watched/x.txt', eventType: 'created', occurredAt: '2026-11-28T10:00:00+23:00' }), 400, /occurredAt: time zone offset \+23:00/],
    ['a size beyond a safe integer', post([{ id: 'g2', eventType: 'Microsoft.Storage.BlobCreated', subject: '/blobServices/default/containers/c/blobs/watched/x', data: { contentLength: '99999999999999999' } }], { auth: 'query' }), 400, /0\.data\.contentLength/],
    ['an SNS SubscribeURL that is no URL', post({ Type: 'SubscriptionConfirmation', MessageId: 'm', TopicArn: 'arn:x', Message: 'm', SubscribeURL: 'not a url' }, { auth: 'query' }), 400, /^invalid event at SubscribeURL: must be a URL/],
    ['NUL in an SNS topic', post({ Type: 'SubscriptionConfirmation', MessageId: 'm', TopicArn: 'arn:\u0000x', Message: 'm' }, { auth: 'query' }), 400, /^invalid event at TopicArn: contains a NUL/],
    ['oversized body', post(null, { raw: JSON.stringify({ events: Array.from({ length: 20_000 }, (_, i) => ({ objectIdentity: `watched/${'x'.repeat(50)}${i}`, eventType: 'created' })) }) }), 413, /exceeds the limit/],
  ];
  for (const [what, response, status, message] of cases) {
    const res = await response;
    t.equal(res.status, status, `${what}: ${status}`);
    const body = (await res.json()) as { error: string };
    t.match(body.error, message, `${what}: says why`);
  }
  t.equal((await events(db.pool)).length, 0, 'no event recorded');
  t.same(await queuedJobs(db.pool), [], 'nothing enqueued');
  t.equal(await count(db.pool, 'select 1 from dsx.integration_event_stats where events_received > 0'), 0, 'nothing counted');
  t.equal(await count(db.pool, `select 1 from dsx.audit_log where action like 'monitor.%'`), 0, 'nothing audited');
});

t.test('events outside every scope, excluded names, deletes and unmonitored scopes are recorded, counted, not scanned', async (t) => {
  const { db, post, write, scope, quiet } = await setup(t);
  const emu = await emulator(t);
  const w = await workers(t, db.pool, { dsxaUrl: emu.url });
  write('watched/keep.txt', 'scan me');
  write('watched/docs/draft.tmp', 'excluded');
  write('other/x.txt', 'no scope');
  write('quiet/y.txt', 'monitoring off');
  const res = await post({
    events: [
      { objectIdentity: 'other/x.txt', eventType: 'created' },
      { objectIdentity: 'watched/docs/draft.tmp', eventType: 'modified' },
      { objectIdentity: 'watched/gone.txt', eventType: 'deleted' },
      { objectIdentity: 'quiet/y.txt', eventType: 'created' },
      { objectIdentity: 'watched/keep.txt', eventType: 'created' },
    ],
  });
  t.equal(res.status, 202);
  const { eventIds } = (await res.json()) as { eventIds: number[] };
  t.equal(eventIds.length, 5);
  await monitorResult(db.pool, w, eventIds[4]!);
  await waitFor(async () => (await events(db.pool)).every((e) => e.status !== 'received'), 'every event ingested', 30_000, jobEvents(w));
  const rows = await events(db.pool);
  t.same(
    rows.map((e) => [e.object_identity, e.status, e.reason, e.scope_id]),
    [
      ['other/x.txt', 'ignored', 'no_scope', null],
      ['watched/docs/draft.tmp', 'ignored', 'excluded', scope.id],
      ['watched/gone.txt', 'ignored', 'deleted', scope.id],
      ['quiet/y.txt', 'ignored', 'monitoring_off', quiet.id],
      ['watched/keep.txt', 'scanned', null, scope.id],
    ],
    'each event with what was done and why',
  );
  t.equal(await count(db.pool, 'select 1 from dsx.scan_results'), 1, 'only the kept object was scanned');
  const { rows: stats } = await db.pool.query(
    `select scope_name, events_received::int, events_scanned::int, ignored_deleted::int, ignored_excluded::int, ignored_disabled::int
       from dsx.monitor_overview order by scope_id`,
  );
  t.same(stats, [
    { scope_name: 'watched', events_received: 3, events_scanned: 1, ignored_deleted: 1, ignored_excluded: 1, ignored_disabled: 0 },
    { scope_name: 'quiet', events_received: 1, events_scanned: 0, ignored_deleted: 0, ignored_excluded: 0, ignored_disabled: 1 },
  ]);
  const { rows: integ } = await db.pool.query('select events_received::int, events_unscoped::int from dsx.integration_event_stats');
  t.same(integ, [{ events_received: 5, events_unscoped: 1 }], 'the unscoped event is counted on the integration');

  // The counters and events are visible through the GraphQL API too; operators switch monitoring.
  const { query } = await apiServer(t, db.url);
  const viewer = await token('viewer');
  const q = await query('{ allMonitorOverviews { nodes { scopeName eventsReceived eventsScanned ignoredExcluded } } allMonitorEvents(condition: {status: "ignored"}) { totalCount } }', {}, viewer);
  t.same(q.errors, undefined);
  t.same(q.data.allMonitorOverviews.nodes[0], { scopeName: 'watched', eventsReceived: '3', eventsScanned: '1', ignoredExcluded: '1' });
  t.equal(q.data.allMonitorEvents.totalCount, 4);
  const setMonitor = 'mutation($id: BigInt!, $on: Boolean!) { setScopeMonitor(input: {scopeId: $id, monitor: $on}) { scope { monitor } } }';
  const refused = await query(setMonitor, { id: String(quiet.id), on: true }, viewer);
  t.match(refused.errors?.[0]?.message, /permission denied/, 'a viewer cannot switch monitoring');
  const ok = await query(setMonitor, { id: String(quiet.id), on: true }, await token('operator'));
  t.same(ok.errors, undefined);
  t.same(ok.data.setScopeMonitor.scope, { monitor: true }, 'an operator can');
});

t.test('a burst of events for one object is debounced: at most two scans, the last event scanned', async (t) => {
  const { db, post, write, scope } = await setup(t);
  const emu = await emulator(t);
  // A window longer than the burst takes to post, even on a slow machine.
  const w = await workers(t, db.pool, { dsxaUrl: emu.url, config: testConfig({ monitorDebounceMs: 3000 }) });
  write('watched/busy.txt', 'v0');
  const ids: number[] = [];
  for (let i = 0; i < 100; i += 10) {
    const batch = await Promise.all(Array.from({ length: 10 }, () => post({ objectIdentity: 'watched/busy.txt', eventType: 'modified' })));
    for (const res of batch) ids.push(((await res.json()) as { eventIds: number[] }).eventIds[0]!);
  }
  ids.sort((a, b) => a - b);
  await waitFor(async () => (await events(db.pool)).every((e) => !['received', 'deferred'].includes(e.status)), 'every event settled', 20_000, jobEvents(w));
  await waitFor(async () => (await count(db.pool, `select 1 from dsx.scan_results where state <> 'finalized'`)) === 0, 'scans finalized', 30_000, jobEvents(w));
  const scans = await count(db.pool, `select 1 from dsx.scan_results where object_identity = 'watched/busy.txt'`);
  t.ok(scans <= 2 && scans >= 1, `${scans} scan(s) for 100 events`);
  const { rows: order } = await db.pool.query(
    `select (select max(discovered_at) from dsx.scan_results) >= (select max(received_at) from dsx.monitor_events) as last_after`,
  );
  t.ok(order[0].last_after, 'the last scan was enqueued after the last event arrived: it reads the last version');
  const { rows } = await db.pool.query(`select status, count(*)::int as n from dsx.monitor_events group by status order by status`);
  const by = Object.fromEntries(rows.map((x) => [x.status, x.n]));
  t.equal((by.scanned ?? 0) + (by.coalesced ?? 0), 100, 'every event scanned or coalesced');
  t.equal(by.scanned, scans, 'one scanned event per scan');
  const { rows: stats } = await db.pool.query('select events_received::int, events_scanned::int, events_coalesced::int from dsx.monitor_stats where scope_id = $1', [scope.id]);
  t.same(stats[0], { events_received: 100, events_scanned: scans, events_coalesced: 100 - scans }, 'counters agree with the rows');
});

t.test('ingest jobs are safe to run twice', async (t) => {
  const { db, post, write } = await setup(t);
  const emu = await emulator(t);
  const stepper = new Stepper(db.pool, { dsxaUrl: emu.url, config: testConfig({ monitorDebounceMs: 60_000 }) });
  write('watched/a.txt', 'a');
  write('watched/b.txt', EICAR_TEST_STRING);
  await post({ events: [{ objectIdentity: 'watched/a.txt', eventType: 'created' }, { objectIdentity: 'watched/b.txt', eventType: 'created' }, { objectIdentity: 'other/z', eventType: 'created' }] });
  await post({ objectIdentity: 'watched/a.txt', eventType: 'modified' }); // within the window: deferred
  const ingest = await queuedJobs(db.pool, 'monitor-event-ingest');
  t.equal(ingest.length, 2);
  for (const job of ingest) {
    await stepper.run(job);
    await stepper.run(job); // redelivered
    await stepper.complete(job);
  }
  t.equal((await queuedJobs(db.pool, 'monitor-scan-object')).length, 2, 'one scan job per scanned event, not two');
  const trailing = await queuedJobs(db.pool, 'monitor-event-ingest');
  t.equal(trailing.length, 1, 'one trailing job for the deferred event');
  await stepper.run(trailing[0]!);
  await stepper.run(trailing[0]!);
  await stepper.complete(trailing[0]!);
  t.equal((await queuedJobs(db.pool, 'monitor-scan-object')).length, 3, 'the trailing scan is enqueued once');
  await stepper.runAll();
  const { rows } = await db.pool.query(`select object_identity, outcome from dsx.scan_results order by id`);
  t.same(rows, [
    { object_identity: 'watched/a.txt', outcome: 'clean' },
    { object_identity: 'watched/b.txt', outcome: 'malicious' },
    { object_identity: 'watched/a.txt', outcome: 'clean' },
  ]);
  const { rows: stats } = await db.pool.query('select events_received::int, events_scanned::int, events_coalesced::int from dsx.monitor_stats');
  t.same(stats, [{ events_received: 3, events_scanned: 3, events_coalesced: 0 }], 'counted once');
  const { rows: integ } = await db.pool.query('select events_unscoped::int from dsx.integration_event_stats');
  t.same(integ, [{ events_unscoped: 1 }]);
});

t.test('monitoring is not starved by a full scan, and both results of one object are kept', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t, { latencyMs: 10, capacity: 8 });
  const integration = await integrationCreate(db.pool, { name: 'synth', kind: 'synthetic', settings: { objects: 3000, eicar_every: 0 } });
  const scope = await scopeCreate(db.pool, { integrationId: integration.id, name: 'synth', root: '', include: [], exclude: [], policy: {}, monitor: true });
  await eventSecretEnsure(db.pool, integration.id, false, SECRET);
  const api = await apiServer(t, db.url);
  const w = await workers(t, db.pool, { dsxaUrl: emu.url, concurrency: 16, config: testConfig({ pageSize: 500 }) });
  const scan = await fullScanStart(db.pool, scope.id, 'test');
  // Wait for a real backlog: objects discovered and many scan jobs still queued (re-checked on the
  // scan's progress NOTIFYs: every recorded page raises `discovered`).
  await waitFor(async () => (await count(db.pool, `select 1 from dsx.scan_results where full_scan_id = $1 and state = 'pending'`, [scan.fullScanId])) >= 400, 'a backlog',
    30_000, [scanEvents(db.pool, scan.fullScanId), jobEvents(w)]);
  const identity = 'obj-000002999'; // among the last objects of the full scan
  const res = await fetch(`${api.url}/events/${integration.id}`, {
    method: 'POST', headers: { authorization: `Bearer ${SECRET}` }, body: JSON.stringify({ objectIdentity: identity, eventType: 'modified' }),
  });
  t.equal(res.status, 202);
  const eventId = ((await res.json()) as { eventIds: number[] }).eventIds[0]!;
  const r = await monitorResult(db.pool, w, eventId);
  const behind = await count(db.pool, `select 1 from dsx.scan_results where full_scan_id = $1 and (state <> 'finalized' or finalized_at > $2)`, [scan.fullScanId, r.finalized_at]);
  t.ok(behind >= 300, `the monitoring scan finished ahead of ${behind} full-scan objects`);
  const done = await waitForScan(db.pool, scan.fullScanId, 120_000);
  t.equal(done.status, 'completed');
  const { rows } = await db.pool.query(
    `select source_type, finalized_at from dsx.scan_results where object_identity = $1 order by finalized_at`, [identity],
  );
  t.same(rows.map((x) => x.source_type).sort(), ['full_scan', 'monitor'], 'both results kept');
  const { rows: obj } = await db.pool.query(
    `select o.last_scan_result_id::int as last, (select id::int from dsx.scan_results where object_identity = $1 order by finalized_at desc limit 1) as latest
       from dsx.objects o where o.identity = $1`, [identity],
  );
  t.equal(obj[0].last, obj[0].latest, 'the object reflects the latest finalized scan');
  await waitForScanJobsGone(db.pool, w, scan.fullScanId); // the checker wants the scan's last job rows gone too
  const { rows: v } = await db.pool.query('select ok from dsx.verify_full_scan($1)', [scan.fullScanId]);
  t.ok(v.every((x) => x.ok), 'the full scan still verifies');
});
