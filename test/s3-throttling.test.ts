/**
 * API limits against a real fauxqs behind the fault proxy: 503 SlowDown answers are backed off and
 * retried (Retry-After honoured), then surface as `throttled`; the integration's limiter is never
 * exceeded, across concurrent calls.
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import t, { type Test } from 'tap';
import { RequestLimiter } from '../src/connectors/rate-limit.ts';
import { S3Connector, type S3ConnectorOptions } from '../src/connectors/s3/connector.ts';
import { startFaultProxy, type FaultAnswer, type FaultProxy } from '../src/testing/fault-proxy.ts';
import { startLocalFauxqs, type LocalFauxqs } from '../src/testing/s3-servers.ts';

const BUCKET = 'busy-bucket';

const slowDown = (headers: Record<string, string> = {}): FaultAnswer => ({
  status: 503,
  headers: { 'content-type': 'application/xml', ...headers },
  body: '<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>',
});

let s3: LocalFauxqs;
t.before(async () => {
  s3 = await startLocalFauxqs({ buckets: [BUCKET] });
  const seed = s3.client();
  for (let i = 0; i < 12; i++) await seed.send(new PutObjectCommand({ Bucket: BUCKET, Key: `f/${i}`, Body: `file ${i}` }));
});
t.teardown(() => s3.stop());

async function proxyFor(t: Test, fault: Parameters<typeof startFaultProxy>[0]['fault']): Promise<FaultProxy> {
  const proxy = await startFaultProxy({ target: s3.endpoint, fault });
  t.teardown(() => proxy.close());
  return proxy;
}

function connector(t: Test, proxy: FaultProxy, limiter: RequestLimiter, extra: Partial<S3ConnectorOptions> = {}): S3Connector {
  const c = new S3Connector({ settings: { bucket: BUCKET, endpoint: proxy.url }, credentials: s3.credentials, limiter, ...extra });
  t.teardown(() => c.close());
  return c;
}

t.test('a call answered 503 SlowDown for its first 3 requests succeeds after backing off 3 times', async (t) => {
  const proxy = await proxyFor(t, (_req, n) => (n <= 3 ? slowDown() : null));
  const pauses: number[] = [];
  const c = connector(t, proxy, new RequestLimiter(), { throttle: { baseDelayMs: 5, maxDelayMs: 50, onThrottle: (_e, ms) => pauses.push(ms) } });
  const page = await c.listPage('f', null, 100);
  t.equal(page.objects.length, 12);
  t.equal(pauses.length, 3, 'three pauses');
  t.same(proxy.stats, { requests: 4, faulted: 3, forwarded: 1 }, 'one try per request: the SDK does not retry on its own');
});

t.test('Retry-After is honoured, and a store that keeps throttling ends as a throttled error', async (t) => {
  const proxy = await proxyFor(t, () => slowDown({ 'retry-after': '2' }));
  const asked: number[] = [];
  const c = connector(t, proxy, new RequestLimiter(), {
    // The pauses are recorded instead of slept: the delay asked for, not elapsed time, is under test.
    throttle: { maxTries: 4, sleep: async (ms) => void asked.push(ms) },
  });
  await t.rejects(c.open('f/1'), {
    name: 'ConnectorError',
    kind: 'throttled',
    retryable: true,
    message: /GetObject s3:\/\/busy-bucket\/f\/1: the store is throttling requests \(SlowDown\) and kept doing so after backing off/,
  });
  t.same(asked, [2000, 2000, 2000], 'each pause is the 2 s the store asked for');
  t.equal(proxy.stats.requests, 4);
});

t.test('429 and a bare 503 are throttling too; a 500 is transient and not retried here', async (t) => {
  const answers: FaultAnswer[] = [{ status: 429 }, { status: 503 }];
  const proxy = await proxyFor(t, (_req, n) => answers[n - 1] ?? null);
  const c = connector(t, proxy, new RequestLimiter(), { throttle: { sleep: async () => {} } });
  t.match(await c.stat('f/2'), { size: 'file 2'.length });
  t.equal(proxy.stats.faulted, 2);

  proxy.setFault(() => ({ status: 500, headers: { 'content-type': 'application/xml' }, body: '<Error><Code>InternalError</Code><Message>oops</Message></Error>' }));
  const before = proxy.stats.requests;
  await t.rejects(c.open('f/2'), { kind: 'transient', message: /500 InternalError/ });
  t.equal(proxy.stats.requests - before, 1, 'one request: transient failures are the pipeline\'s to retry');
});

t.test('concurrent reads under throttling never exceed the limiter\'s 2 requests in flight', async (t) => {
  const limiter = new RequestLimiter({ maxInFlight: 2 });
  let maxSeen = 0;
  const proxy = await proxyFor(t, (_req, n) => {
    maxSeen = Math.max(maxSeen, limiter.inFlight);
    return n % 3 === 1 ? slowDown() : null;
  });
  const c = connector(t, proxy, limiter, { throttle: { baseDelayMs: 2, maxDelayMs: 10 } });
  const bodies = await Promise.all(
    Array.from({ length: 12 }, async (_, i) => {
      const opened = await c.open(`f/${i}`);
      const chunks: Buffer[] = [];
      for await (const chunk of opened.stream) chunks.push(chunk as Buffer);
      return Buffer.concat(chunks).toString();
    }),
  );
  t.same(bodies, Array.from({ length: 12 }, (_, i) => `file ${i}`), 'every read succeeded after backing off');
  t.ok(proxy.stats.faulted >= 4, `${proxy.stats.faulted} throttled answers`);
  t.equal(maxSeen, 2, 'the limit was reached and never exceeded');
  t.equal(limiter.inFlight, 0);
});
