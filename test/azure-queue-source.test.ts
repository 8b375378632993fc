import { EventEmitter, once } from 'node:events';
import { QueueServiceClient, type QueueClient } from '@azure/storage-queue';
import t, { type Test } from 'tap';
import { AzureQueueEventSource, decodeQueueMessage, poisonQueueUrl, type AzureQueueSourceOptions } from '../src/monitor/azure-queue-source.ts';
import { parseEventBody } from '../src/monitor/events/index.ts';
import { AZURITE_ACCOUNT, AZURITE_KEY, startAzurite } from '../src/testing/azurite.ts';

const az = await startAzurite({ queue: true });
t.teardown(() => az.stop());
const queues = QueueServiceClient.fromConnectionString(az.connectionString);
const KEY = { accountName: AZURITE_ACCOUNT, accountKey: AZURITE_KEY };
let n = 0;

/**
 * Event Grid's BlobCreated sample in the Event Grid and CloudEvents schemas (Microsoft Learn, "Azure
 * Blob Storage as an Event Grid source"), one event per message as the storage-queue destination writes it.
 */
const GRID_EVENT = JSON.stringify({"topic": "/subscriptions/{subscription-id}/resourceGroups/Storage/providers/Microsoft.Storage/storageAccounts/my-storage-account", "subject": "/blobServices/default/containers/test-container/blobs/new-file.txt", "eventType": "Microsoft.Storage.BlobCreated", "eventTime": "2017-06-26T18:41:00.9584103Z", "id": "831e1650-001e-001b-66ab-eeb76e069631", "data": {"api": "PutBlockList", "clientRequestId": "6d79dbfb-0e37-4fc4-981f-442c9ca65760", "requestId": "831e1650-001e-001b-66ab-eeb76e000000", "eTag": "\"0x8D4BCC2E4835CD0\"", "contentType": "text/plain", "contentLength": 524288, "blobType": "BlockBlob", "url": "https://my-storage-account.blob.core.windows.net/testcontainer/new-file.txt", "sequencer": "00000000000004420000000000028963", "storageDiagnostics": {"batchId": "b68529f3-68cd-4744-baa4-3c0498ec19f0"}}, "dataVersion": "", "metadataVersion": "1"});
const CLOUD_EVENT = JSON.stringify({"source": "/subscriptions/{subscription-id}/resourceGroups/Storage/providers/Microsoft.Storage/storageAccounts/my-storage-account", "subject": "/blobServices/default/containers/test-container/blobs/new-file.txt", "type": "Microsoft.Storage.BlobCreated", "time": "2017-06-26T18:41:00.9584103Z", "id": "831e1650-001e-001b-66ab-eeb76e069631", "data": {"api": "PutBlockList", "clientRequestId": "6d79dbfb-0e37-4fc4-981f-442c9ca65760", "requestId": "831e1650-001e-001b-66ab-eeb76e000000", "eTag": "\"0x8D4BCC2E4835CD0\"", "contentType": "text/plain", "contentLength": 524288, "blobType": "BlockBlob", "url": "https://my-storage-account.blob.core.windows.net/testcontainer/new-file.txt", "sequencer": "00000000000004420000000000028963", "storageDiagnostics": {"batchId": "b68529f3-68cd-4744-baa4-3c0498ec19f0"}}, "specversion": "1.0"});
const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

async function freshQueue(): Promise<QueueClient> {
  const q = queues.getQueueClient(`events-${++n}`);
  await q.create();
  return q;
}

/** Records every `handle` call and deletion, and lets a test wait for the n-th of either. */
class Recorder extends EventEmitter {
  readonly handled: { body: string; messageId: string }[] = [];
  readonly deleted: string[] = [];
  async until(kind: 'handled' | 'deleted', count: number): Promise<void> {
    while (this[kind].length < count) await once(this, kind);
  }
}

function source(t: Test, q: QueueClient, rec: Recorder, opts: Partial<AzureQueueSourceOptions> = {}): AzureQueueEventSource {
  const s = new AzureQueueEventSource({
    queueUrl: q.url,
    credentials: KEY,
    idleMinMs: 20,
    idleMaxMs: 100,
    errorMaxMs: 100,
    visibilityTimeoutSec: 1,
    handle: async (body, messageId) => {
      rec.handled.push({ body, messageId });
      rec.emit('handled');
    },
    onDeleted: (id) => {
      rec.deleted.push(id);
      rec.emit('deleted');
    },
    ...opts,
  });
  t.teardown(() => s.stop());
  return s;
}

async function visibleCount(q: QueueClient): Promise<number> {
  return (await q.peekMessages({ numberOfMessages: 32 })).peekedMessageItems.length;
}

t.test('Event Grid events arrive base64-encoded or as plain JSON; both reach handle as JSON and are deleted after it', async (t) => {
  const q = await freshQueue();
  await q.sendMessage(b64(GRID_EVENT));
  await q.sendMessage(CLOUD_EVENT);
  const rec = new Recorder();
  const s = source(t, q, rec);
  s.start();
  await rec.until('deleted', 2);
  const bodies = rec.handled.map((h) => h.body).sort();
  t.same(bodies, [CLOUD_EVENT, GRID_EVENT].sort(), 'the decoded events');
  for (const body of bodies) {
    const parsed = parseEventBody(JSON.parse(body));
    t.match(parsed, { kind: 'events', source: 'eventgrid', events: [{ event_type: 'created', container: 'test-container', object_identity: 'new-file.txt' }] });
  }
  t.same(rec.deleted.sort(), rec.handled.map((h) => h.messageId).sort(), 'each deleted after its handle');
  t.equal(await visibleCount(q), 0);
  await s.stop();
  t.equal(s.running, false);
});

t.test('a message whose handle throws is not deleted and comes back after the visibility timeout', async (t) => {
  const q = await freshQueue();
  await q.sendMessage(b64(GRID_EVENT));
  const rec = new Recorder();
  let calls = 0;
  const s = source(t, q, rec, {
    handle: async (body, messageId) => {
      rec.handled.push({ body, messageId });
      rec.emit('handled');
      if (++calls === 1) throw new Error('database unavailable');
    },
  });
  s.start();
  await rec.until('deleted', 1);
  t.equal(rec.handled.length, 2, 'delivered twice');
  t.equal(rec.handled[0]!.messageId, rec.handled[1]!.messageId, 'the same message');
  t.equal(s.stats.failed, 1);
  t.equal(s.stats.deleted, 1);
});

t.test('a crash between handle and delete redelivers the message: at least once', async (t) => {
  const q = await freshQueue();
  await q.sendMessage(b64(GRID_EVENT));
  const rec = new Recorder();
  let crashes = 0;
  const s = source(t, q, rec, {
    afterHandle: () => {
      if (crashes++ === 0) throw new Error('simulated crash after the commit, before the delete');
    },
  });
  s.start();
  await rec.until('deleted', 1);
  t.equal(rec.handled.length, 2, 'handled again after the crash (the intake dedupes by event id)');
  t.equal(await visibleCount(q), 0);
});

t.test('stop waits for the batch in flight, whose messages are then deleted', async (t) => {
  const q = await freshQueue();
  await q.sendMessage(GRID_EVENT);
  const rec = new Recorder();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const s = source(t, q, rec, {
    handle: async (body, messageId) => {
      rec.handled.push({ body, messageId });
      rec.emit('handled');
      await gate;
    },
  });
  s.start();
  await rec.until('handled', 1);
  let stopped = false;
  const stopping = s.stop().then(() => (stopped = true));
  await new Promise((r) => setImmediate(r));
  t.equal(stopped, false, 'stop waits while handle runs');
  release();
  await stopping;
  t.same(rec.deleted, [rec.handled[0]!.messageId], 'the in-flight message was deleted before stop resolved');
  t.equal(await visibleCount(q), 0);
});

t.test('a message that fails every time goes to the poison queue after maxDequeueCount deliveries; nothing is lost', async (t) => {
  const q = await freshQueue();
  await q.sendMessage('not an event at all');
  const rec = new Recorder();
  const s = source(t, q, rec, {
    maxDequeueCount: 2,
    handle: async (body, messageId) => {
      rec.handled.push({ body, messageId });
      rec.emit('handled');
      throw new Error('unparseable');
    },
  });
  s.start();
  await rec.until('deleted', 1);
  t.equal(rec.handled.length, 2, 'tried maxDequeueCount times');
  t.equal(s.stats.poisoned, 1);
  const poison = queues.getQueueClient(`${q.name}-poison`);
  t.same((await poison.peekMessages()).peekedMessageItems.map((m) => m.messageText), ['not an event at all'], 'kept verbatim in the poison queue');
  t.equal(await visibleCount(q), 0);
});

t.test('a missing queue is reported with what to do, and polling recovers once it exists', async (t) => {
  const q = queues.getQueueClient(`late-${++n}`);
  const rec = new Recorder();
  let failed!: (message: string) => void;
  const firstError = new Promise<string>((r) => (failed = r));
  const s = source(t, q, rec, { onError: (m) => failed(m) });
  s.start();
  t.match(await firstError, /receiving queue messages: the queue does not exist/);
  t.match(s.stats.lastError, /the queue does not exist in .*: create it or correct settings\.event_queue_url/);
  await q.create();
  await q.sendMessage(GRID_EVENT);
  await rec.until('deleted', 1);
  t.equal(rec.handled[0]!.body, GRID_EVENT);
});

t.test('an idle queue is polled with a growing pause', async (t) => {
  const q = await freshQueue();
  const rec = new Recorder();
  const s = source(t, q, rec, { idleMinMs: 20, idleMaxMs: 160 });
  s.start();
  // Elapsed time is what is under test: 600 ms of idling. Pauses of 20, 40, 80, 160, 160, ... ms allow
  // about 7 receives; without the backoff (20 ms each) it would be about 30.
  await new Promise((r) => setTimeout(r, 600));
  await s.stop();
  t.ok(s.stats.receives >= 2 && s.stats.receives <= 10, `${s.stats.receives} receives in 600 ms`);
  t.equal(s.stats.receives, s.stats.emptyReceives);
});

t.test('message bodies and queue URLs are checked', async (t) => {
  t.equal(decodeQueueMessage(b64(GRID_EVENT)), GRID_EVENT, 'base64 of JSON is decoded');
  t.equal(decodeQueueMessage(GRID_EVENT), GRID_EVENT, 'JSON is kept');
  t.equal(decodeQueueMessage('abcd'), 'abcd', 'base64 of something else is left as it came');
  t.equal(poisonQueueUrl('http://127.0.0.1:1/devstoreaccount1/events'), 'http://127.0.0.1:1/devstoreaccount1/events-poison');
  t.throws(() => new AzureQueueEventSource({ queueUrl: `${az.queueAccountUrl}/`, credentials: KEY, handle: async () => {} }), { name: 'ConnectorError', message: /must end in a queue name/ });
  t.throws(() => new AzureQueueEventSource({ queueUrl: `${az.queueAccountUrl}/q1?sig=SECRET`, credentials: KEY, handle: async () => {} }), { message: /must not carry a query string/ });
  t.throws(() => new AzureQueueEventSource({ queueUrl: 'http://127.0.0.1:1/other/events', credentials: { connectionString: az.connectionString }, handle: async () => {} }), {
    message: /differs from the connection string's queue endpoint/,
  });
  t.throws(() => new AzureQueueEventSource({ queueUrl: `${az.queueAccountUrl}/q1`, credentials: KEY, batchSize: 33, handle: async () => {} }), { message: /1-32/ });
});
