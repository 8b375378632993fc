/**
 * The SQS event source against fauxqs's real SQS (and SNS -> SQS delivery): bodies handed over as
 * they are, deletes only after `handle` resolved, redelivery after a failure or a crash before the
 * delete, stop semantics, and backoff on receive errors.
 */
import t, { type Test } from 'tap';
import { parseEventBody } from '../src/monitor/events/index.ts';
import { SqsEventSource, regionOfQueueUrl, type SqsEventSourceOptions } from '../src/monitor/sqs-source.ts';
import { startFaultProxy } from '../src/testing/fault-proxy.ts';
import { startLocalFauxqs, type LocalFauxqs } from '../src/testing/s3-servers.ts';

/** An S3 ObjectCreated:Put notification as AWS documents it (events/s3-put.json), with an encoded key. */
const S3_PUT = {
  Records: [
    {
      eventVersion: '2.1',
      eventSource: 'aws:s3',
      awsRegion: 'us-west-2',
      eventTime: '1970-01-01T00:00:00.000Z',
      eventName: 'ObjectCreated:Put',
      userIdentity: { principalId: 'AIDAJDPLRKLG7UEXAMPLE' },
      requestParameters: { sourceIPAddress: '127.0.0.1' },
      responseElements: { 'x-amz-request-id': 'C3D13FE58DE4C810', 'x-amz-id-2': 'FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD' },
      s3: {
        s3SchemaVersion: '1.0',
        configurationId: 'testConfigRule',
        bucket: { name: 'mybucket', ownerIdentity: { principalId: 'A3NL1KOZZKExample' }, arn: 'arn:aws:s3:::mybucket' },
        object: { key: 'Happy+Face.jpg', size: 1024, eTag: 'd41d8cd98f00b204e9800998ecf8427e', versionId: '096fKKXTRTtl3on89fVO.nfljtsv6qko', sequencer: '0055AED6DCD90281E5' },
      },
    },
  ],
};
const S3_PUT_BODY = JSON.stringify(S3_PUT);

let fq: LocalFauxqs;
let queueNo = 0;
t.before(async () => {
  fq = await startLocalFauxqs();
});
t.teardown(() => fq.stop());

/** A fresh queue (1 s visibility timeout, so redelivery is quick). */
function queue(): { name: string; url: string } {
  const name = `events-${++queueNo}`;
  return { name, url: fq.server.createQueue(name, { attributes: { VisibilityTimeout: '1' } }).queueUrl };
}

function depth(name: string): { ready: number; inflight: number } {
  const q = fq.server.inspectQueue(name)!;
  return { ready: q.messages.ready.length + q.messages.delayed.length, inflight: q.messages.inflight.length };
}

type Batch = { handled: string[]; failed: string[]; deleted: string[] };

/** A started source whose batches can be awaited one by one. */
function source(t: Test, url: string, opts: Partial<SqsEventSourceOptions> & Pick<SqsEventSourceOptions, 'handle'>) {
  const batches: Batch[] = [];
  const waiters: ((b: Batch) => void)[] = [];
  const s = new SqsEventSource({
    queueUrl: url,
    endpoint: fq.endpoint,
    credentials: fq.credentials,
    waitTimeSeconds: 1,
    ...opts,
    hooks: {
      ...opts.hooks,
      afterBatch(b) {
        const w = waiters.shift();
        if (w) w(b);
        else batches.push(b);
      },
    },
  });
  s.start();
  t.teardown(() => s.stop());
  return {
    source: s,
    nextBatch: () => (batches.length > 0 ? Promise.resolve(batches.shift()!) : new Promise<Batch>((r) => waiters.push(r))),
  };
}

t.test('a message is handed over as it is and deleted only after handle resolved', async (t) => {
  const q = queue();
  const { messageId } = fq.server.sendMessage(q.name, S3_PUT_BODY);
  const calls: [string, string][] = [];
  const whileHandling: { ready: number; inflight: number }[] = [];
  const { nextBatch, source: s } = source(t, q.url, {
    async handle(body, id) {
      calls.push([body, id]);
      whileHandling.push(depth(q.name));
    },
  });
  const batch = await nextBatch();
  t.same(calls, [[S3_PUT_BODY, messageId]], 'the body, byte for byte, with the SQS message id');
  t.same(whileHandling, [{ ready: 0, inflight: 1 }], 'not deleted while being handled');
  t.same(batch, { handled: [messageId], failed: [], deleted: [messageId] });
  t.same(depth(q.name), { ready: 0, inflight: 0 }, 'deleted after handle resolved');
  t.match(s.stats, { received: 1, handled: 1, deleted: 1, failed: 0 });
  const parsed = parseEventBody(JSON.parse(calls[0]![0]));
  t.match(parsed, { kind: 'events', source: 's3', events: [{ object_identity: 'Happy Face.jpg', container: 'mybucket' }] }, 'the intake parser reads it (key decoded)');
});

t.test('a message whose handle throws is kept and redelivered after its visibility timeout, then deleted', async (t) => {
  const q = queue();
  const { messageId } = fq.server.sendMessage(q.name, 'first');
  let tries = 0;
  const { nextBatch } = source(t, q.url, {
    async handle() {
      if (++tries === 1) throw new Error('database unavailable');
    },
  });
  t.same(await nextBatch(), { handled: [], failed: [messageId], deleted: [] });
  t.same(depth(q.name), { ready: 0, inflight: 1 }, 'kept, invisible until its visibility timeout ends');
  t.same(await nextBatch(), { handled: [messageId], failed: [], deleted: [messageId] }, 'redelivered and handled');
  t.equal(tries, 2);
  t.same(depth(q.name), { ready: 0, inflight: 0 });
});

t.test('a crash between handle and delete leaves the message, which is handled again (at least once)', async (t) => {
  const q = queue();
  const { messageId } = fq.server.sendMessage(q.name, 'crashy');
  const seen: string[] = [];
  let crash = true;
  const { nextBatch } = source(t, q.url, {
    async handle(_body, id) {
      seen.push(id);
    },
    hooks: {
      beforeDelete() {
        if (crash) {
          crash = false;
          throw new Error('simulated crash before the delete');
        }
      },
    },
  });
  t.same(await nextBatch(), { handled: [messageId], failed: [], deleted: [] });
  t.same(await nextBatch(), { handled: [messageId], failed: [], deleted: [messageId] });
  t.same(seen, [messageId, messageId], 'the same message id twice: the handler dedupes');
});

t.test('SNS-enveloped and raw-delivery bodies are delivered as they are', async (t) => {
  const sns = queue();
  const raw = queue();
  const topic = `s3-events-${queueNo}`;
  fq.server.createTopic(topic);
  fq.server.subscribe({ topic, queue: sns.name });
  fq.server.subscribe({ topic, queue: raw.name, attributes: { RawMessageDelivery: 'true' } });
  fq.server.publish(topic, S3_PUT_BODY, { subject: 'Amazon S3 Notification' });

  const bodies: Record<string, string> = {};
  const a = source(t, sns.url, { handle: async (body) => void (bodies.sns = body) });
  const b = source(t, raw.url, { handle: async (body) => void (bodies.raw = body) });
  await Promise.all([a.nextBatch(), b.nextBatch()]);

  const envelope = JSON.parse(bodies.sns!) as { Type: string; Message: string };
  t.equal(envelope.Type, 'Notification');
  t.equal(envelope.Message, S3_PUT_BODY, 'the S3 event is a JSON string in Message');
  t.equal(bodies.raw, S3_PUT_BODY, 'raw delivery: the bare S3 event');
  const viaSns = parseEventBody(envelope);
  const viaRaw = parseEventBody(JSON.parse(bodies.raw!));
  t.match(viaSns, { kind: 'events', source: 'sns' });
  t.match(viaRaw, { kind: 'events', source: 's3' });
  t.same((viaSns as { events: unknown[] }).events, (viaRaw as { events: unknown[] }).events, 'the same events either way');
});

t.test('stop waits for the batch being handled, deletes it, and aborts the long poll at once', async (t) => {
  const q = queue();
  const { messageId } = fq.server.sendMessage(q.name, 'slow');
  let release!: () => void;
  let started!: () => void;
  const handling = new Promise<void>((r) => (started = r));
  const s = new SqsEventSource({
    queueUrl: q.url,
    endpoint: fq.endpoint,
    credentials: fq.credentials,
    waitTimeSeconds: 20,
    handle: async () => {
      started();
      await new Promise<void>((r) => (release = r));
    },
  });
  s.start();
  await handling;
  let stopped = false;
  const stopping = s.stop().then(() => (stopped = true));
  await new Promise((r) => setImmediate(r));
  t.equal(stopped, false, 'stop waits for the handler');
  release();
  await stopping;
  t.match(s.stats, { handled: 1, deleted: 1 });
  t.same(depth(q.name), { ready: 0, inflight: 0 }, `${messageId} deleted before stop resolved`);

  // A source idle in a 20 s long poll stops promptly: elapsed time is what is under test here.
  const idle = new SqsEventSource({ queueUrl: q.url, endpoint: fq.endpoint, credentials: fq.credentials, waitTimeSeconds: 20, handle: async () => {} });
  idle.start();
  await new Promise((r) => setTimeout(r, 50)); // lets the receive reach the server (a sleep under 100 ms)
  const t0 = performance.now();
  await idle.stop();
  t.ok(performance.now() - t0 < 2000, 'the long poll was aborted, not waited out');
  t.throws(() => idle.start(), /was stopped: build a new one/);
});

t.test('receive errors back off and the loop goes on', async (t) => {
  const q = queue();
  fq.server.sendMessage(q.name, 'after errors');
  const proxy = await startFaultProxy({
    target: fq.endpoint,
    fault: (_req, n) =>
      n <= 2 ? { status: 403, headers: { 'content-type': 'application/x-amz-json-1.0' }, body: JSON.stringify({ __type: 'com.amazon.coral.service#AccessDeniedException', message: 'denied for now' }) } : null,
  });
  t.teardown(() => proxy.close());
  const pauses: number[] = [];
  const { nextBatch } = source(t, q.url, {
    endpoint: proxy.url,
    receiveBackoff: { baseMs: 4, maxMs: 40 },
    hooks: { onReceiveError: (_err, ms) => pauses.push(ms) },
    handle: async () => {},
  });
  const batch = await nextBatch();
  t.equal(batch.deleted.length, 1);
  t.equal(pauses.length, 2, 'two failed receives, each followed by a pause');
  t.ok(pauses[0]! >= 2 && pauses[0]! <= 4 && pauses[1]! >= 4 && pauses[1]! <= 8, `pauses double: ${pauses.join(', ')} ms`);
});

t.test('the signing region comes from an AWS queue URL; a bad URL or option is refused with a clear error', async (t) => {
  t.equal(regionOfQueueUrl('https://sqs.eu-west-1.amazonaws.com/123456789012/q'), 'eu-west-1');
  t.equal(regionOfQueueUrl('https://us-east-2.queue.amazonaws.com/123456789012/q'), 'us-east-2');
  t.equal(regionOfQueueUrl('http://127.0.0.1:4566/000000000000/q'), undefined);
  t.throws(() => new SqsEventSource({ queueUrl: 'not a url', handle: async () => {} }), /is not a URL: set event_queue_url/);
  t.throws(() => new SqsEventSource({ queueUrl: 'https://sqs.eu-west-1.amazonaws.com/1/q', waitTimeSeconds: 30, handle: async () => {} }), /waitTimeSeconds must be an integer from 0 to 20/);
  t.throws(() => new SqsEventSource({ queueUrl: 'https://sqs.eu-west-1.amazonaws.com/1/q', credentials: { accessKeyId: 'x' }, handle: async () => {} }), /credentials\.secretAccessKey/);
});
