/**
 * Monitoring of a bucket through an SQS queue, against real local servers (fauxqs: S3 and SQS): S3
 * event notifications in the queue scan the object they name (its key verbatim, URL-decoded), the
 * message is deleted only after its events are committed (a crash in between redelivers it, and the
 * repeat is dropped as a duplicate), our own quarantine copies and tag writes trigger nothing, and an
 * event for a version already scanned (same etag) scans nothing.
 */
import { HeadObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import t from 'tap';
import { integrationCreate, scopeCreate } from '../src/db/sql/catalog.ts';
import { EICAR } from '../src/testing/fixtures.ts';
import { startLocalFauxqs, type LocalFauxqs } from '../src/testing/s3-servers.ts';
import { createTestDatabase } from './helpers/db.ts';
import { emulator, testConfig, waitFor, workers } from './helpers/pipeline.ts';
import { jobEvents } from './helpers/wait.ts';

const BUCKET = 'watched';
let s3: LocalFauxqs;
let seed: S3Client;
t.before(async () => {
  s3 = await startLocalFauxqs({ buckets: [BUCKET] });
  seed = s3.client();
});
t.teardown(() => s3.stop());

/** An S3 event notification as S3 sends it to SQS (keys form-URL-encoded). */
function s3Event(eventName: string, key: string, etag: string, sequencer: string) {
  return JSON.stringify({
    Records: [
      {
        eventVersion: '2.1',
        eventSource: 'aws:s3',
        eventName,
        eventTime: new Date().toISOString(),
        s3: { bucket: { name: BUCKET }, object: { key: encodeURIComponent(key).replaceAll('%20', '+').replaceAll('%2F', '/'), size: 68, eTag: etag, sequencer } },
      },
    ],
  });
}

async function put(key: string, body: string): Promise<string> {
  await seed.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
  const head = await seed.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
  return head.ETag!.replaceAll('"', '');
}

t.test('an S3 event from SQS is scanned once, its message deleted only after the commit, repeats and our own writes dropped', async (t) => {
  const queue = s3.server.createQueue('dsx-events', { attributes: { VisibilityTimeout: '1' } });
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const integration = await integrationCreate(db.pool, {
    name: 'watched',
    kind: 's3',
    settings: { bucket: BUCKET, endpoint: s3.endpoint, event_queue_url: queue.queueUrl, event_queue_endpoint: s3.endpoint },
    credentials: s3.credentials,
  });
  await scopeCreate(db.pool, { integrationId: integration.id, name: 'inbox', root: 'in', include: [], exclude: [], policy: {}, monitor: true });

  // A crash between the commit of the events and the delete of the message, once.
  let crashes = 1;
  const committedBeforeCrash: number[] = [];
  const w = await workers(t, db.pool, {
    dsxaUrl: emu.url,
    config: testConfig({ monitorSyncMs: 100, monitorDebounceMs: 0 }),
    hooks: {
      queues: {
        beforeDelete: async () => {
          if (crashes-- > 0) {
            committedBeforeCrash.push((await db.pool.query('select count(*)::int as n from dsx.monitor_events')).rows[0].n);
            throw new Error('simulated crash after the commit, before the delete');
          }
        },
      },
    },
  });

  const etag = await put('in/new file+1.com', EICAR);
  s3.server.sendMessage('dsx-events', s3Event('ObjectCreated:Put', 'in/new file+1.com', etag, '0065A1B2C3D4E5F601'));
  await waitFor(async () => (await db.pool.query(`select 1 from dsx.scan_results where source_type = 'monitor' and state = 'finalized'`)).rowCount === 1, 'the scan of the event', 30_000, jobEvents(w));
  const { rows: results } = await db.pool.query(`select object_identity, outcome, etag from dsx.scan_results where source_type = 'monitor'`);
  t.same(results, [{ object_identity: 'in/new file+1.com', outcome: 'malicious', etag }], 'the object the event names, its key decoded verbatim');
  t.same(committedBeforeCrash, [1], 'the events were committed before the (failed) delete');

  // The redelivered message (after its 1 s visibility timeout) is a duplicate: nothing is recorded twice.
  // The SQS source records duplicates, rejections and deletes without a job or a NOTIFY, and fauxqs'
  // queue state announces nothing: these waits poll.
  await waitFor(async () => Number((await db.pool.query('select events_duplicate from dsx.integration_event_stats')).rows[0]?.events_duplicate ?? 0) === 1, 'the redelivery');
  await waitFor(async () => {
    const q = s3.server.inspectQueue('dsx-events')!;
    return q.messages.ready.length + q.messages.inflight.length + q.messages.delayed.length === 0;
  }, 'the queue to empty');
  t.equal((await db.pool.query('select count(*)::int as n from dsx.monitor_events')).rows[0].n, 1, 'one event recorded');

  // Our own writes, and a redelivery of a version already scanned under another sequencer.
  s3.server.sendMessage('dsx-events', s3Event('ObjectCreated:Copy', 'dsx-quarantine/in/new file+1.com', etag, '0065A1B2C3D4E5F602'));
  s3.server.sendMessage('dsx-events', s3Event('ObjectTagging:Put', 'in/new file+1.com', etag, '0065A1B2C3D4E5F603'));
  s3.server.sendMessage('dsx-events', s3Event('ObjectCreated:Put', 'in/new file+1.com', etag, '0065A1B2C3D4E5F604'));
  await waitFor(async () => (await db.pool.query(`select 1 from dsx.monitor_events where reason = 'unchanged'`)).rowCount === 1, 'the unchanged event');
  await waitFor(async () => {
    const q = s3.server.inspectQueue('dsx-events')!;
    return q.messages.ready.length + q.messages.inflight.length === 0;
  }, 'the queue to empty again');
  const { rows: events } = await db.pool.query('select object_identity, status, reason from dsx.monitor_events order by id');
  t.same(
    events,
    [
      { object_identity: 'in/new file+1.com', status: 'scanned', reason: null },
      { object_identity: 'in/new file+1.com', status: 'ignored', reason: 'unchanged' },
    ],
    'the quarantine copy and the tag write were skipped; the same version again was not rescanned',
  );
  t.equal((await db.pool.query(`select count(*)::int as n from dsx.scan_results where source_type = 'monitor'`)).rows[0].n, 1, 'one scan in all');
  const { rows: stats } = await db.pool.query('select ignored_unchanged::int as n from dsx.monitor_overview');
  t.same(stats, [{ n: 1 }], 'counted per scope');
});

t.test('a queue message that is not an event is recorded and deleted, not redelivered forever', async (t) => {
  const queue = s3.server.createQueue('dsx-junk', { attributes: { VisibilityTimeout: '1' } });
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  await integrationCreate(db.pool, {
    name: 'junk',
    kind: 's3',
    settings: { bucket: BUCKET, endpoint: s3.endpoint, event_queue_url: queue.queueUrl, event_queue_endpoint: s3.endpoint },
    credentials: s3.credentials,
  });
  await workers(t, db.pool, { dsxaUrl: emu.url, config: testConfig({ monitorSyncMs: 100 }) });
  s3.server.sendMessage('dsx-junk', 'this is not json');
  await waitFor(async () => (await db.pool.query(`select 1 from dsx.audit_log where action = 'monitor.queue_message_rejected'`)).rowCount === 1, 'the rejection');
  await waitFor(async () => {
    const q = s3.server.inspectQueue('dsx-junk')!;
    return q.messages.ready.length + q.messages.inflight.length === 0;
  }, 'the message deleted');
  const { rows } = await db.pool.query(`select detail->>'error' as error from dsx.audit_log where action = 'monitor.queue_message_rejected'`);
  t.match(rows[0].error, /JSON/, 'with why');
});
