import { BlobServiceClient } from '@azure/storage-blob';
import t, { type Test } from 'tap';
import { AzureBlobConnector } from '../src/connectors/azure-blob/connector.ts';
import { RequestLimiter, type LimitOptions } from '../src/connectors/rate-limit.ts';
import { startFaultProxy, type FaultAnswer } from '../src/testing/fault-proxy.ts';
import { AZURITE_ACCOUNT, AZURITE_KEY, readAll, startAzurite, uploadBlobs } from '../src/testing/azurite.ts';

const az = await startAzurite({ blob: true });
t.teardown(() => az.stop());
const service = BlobServiceClient.fromConnectionString(az.connectionString);
const container = service.getContainerClient('limits');
await container.create();
const NAMES = Array.from({ length: 12 }, (_, i) => `obj-${i}`);
await uploadBlobs(container, Object.fromEntries(NAMES.map((x) => [x, `body ${x}`])));

/** A limiter that also records how many of its callers ran at once, and how many ran in all. */
class CountingLimiter extends RequestLimiter {
  running = 0;
  maxRunning = 0;
  runs = 0;
  constructor(opts: LimitOptions) {
    super(opts);
  }
  override run<T>(fn: () => Promise<T>): Promise<T> {
    return super.run(async () => {
      this.runs++;
      this.running++;
      this.maxRunning = Math.max(this.maxRunning, this.running);
      try {
        return await fn();
      } finally {
        this.running--;
      }
    });
  }
}

const SERVER_BUSY: FaultAnswer = {
  status: 503,
  headers: { 'content-type': 'application/xml', 'x-ms-error-code': 'ServerBusy' },
  body: '<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code><Message>The server is busy.</Message></Error>',
};

async function proxied(t: Test, fault: (n: number) => FaultAnswer | null) {
  const proxy = await startFaultProxy({ target: az.blobAccountUrl!.replace(/\/devstoreaccount1$/, ''), fault: (_req, n) => fault(n) });
  t.teardown(() => proxy.close());
  return proxy;
}

function connector(accountUrl: string, limiter: RequestLimiter, throttles: number[], maxTries = 6): AzureBlobConnector {
  return new AzureBlobConnector({
    settings: { account_url: accountUrl, container: 'limits' },
    credentials: { accountName: AZURITE_ACCOUNT, accountKey: AZURITE_KEY },
    limiter,
    retry: { baseDelayMs: 20, maxTries },
    onThrottle: (_err, delayMs) => throttles.push(delayMs),
  });
}

t.test('503 ServerBusy for the first requests: the connector backs off and succeeds', async (t) => {
  const proxy = await proxied(t, (n) => (n <= 3 ? SERVER_BUSY : null));
  const throttles: number[] = [];
  const c = connector(`${proxy.url}/${AZURITE_ACCOUNT}`, new RequestLimiter(), throttles);
  const page = await c.listPage('', null, 100);
  t.same(page.objects.map((o) => o.identity).sort(), [...NAMES].sort(), 'the listing came through');
  t.equal(throttles.length, 3, 'three backoffs');
  t.ok(throttles.every((d) => d > 0), 'each one paused');
  t.same(proxy.stats, { requests: 4, faulted: 3, forwarded: 1 }, 'one request per try: the SDK does not retry on its own');
});

t.test('a Retry-After from the store sets the pause', async (t) => {
  const proxy = await proxied(t, (n) => (n === 1 ? { ...SERVER_BUSY, headers: { ...SERVER_BUSY.headers, 'retry-after': '1' } } : null));
  const throttles: number[] = [];
  const c = connector(`${proxy.url}/${AZURITE_ACCOUNT}`, new RequestLimiter(), throttles);
  t.equal((await c.stat('obj-1'))?.size, Buffer.byteLength('body obj-1'));
  t.same(throttles, [1000], 'waited the second Azure asked for');
});

t.test('throttling that outlasts the retries surfaces as a throttled error, not a failure of the object', async (t) => {
  const proxy = await proxied(t, (n) => (n % 2 ? SERVER_BUSY : { status: 429, headers: { 'x-ms-error-code': 'TooManyRequests' } }));
  const c = connector(`${proxy.url}/${AZURITE_ACCOUNT}`, new RequestLimiter(), [], 3);
  await t.rejects(c.open('obj-1'), { name: 'ConnectorError', kind: 'throttled', retryable: true, message: /kept throttling \(503 ServerBusy\) through 3 tries/ });
  t.equal(proxy.stats.requests, 3);
});

t.test('under throttling and concurrency the limiter never exceeds its in-flight limit, and every try passes through it', async (t) => {
  const proxy = await proxied(t, (n) => (n % 3 === 1 ? SERVER_BUSY : null));
  const limiter = new CountingLimiter({ maxInFlight: 2 });
  const throttles: number[] = [];
  const c = connector(`${proxy.url}/${AZURITE_ACCOUNT}`, limiter, throttles);
  const bodies = await Promise.all(NAMES.map(async (x) => (await readAll((await c.open(x)).stream)).toString()));
  t.same(bodies, NAMES.map((x) => `body ${x}`), 'every object read intact');
  t.ok(throttles.length >= 4, `backed off ${throttles.length} times`);
  t.equal(limiter.maxRunning, 2, 'two at once at most, and the limit was reached');
  t.equal(limiter.runs, proxy.stats.requests, 'each request the store saw was one limiter slot');
  t.equal(limiter.inFlight, 0, 'all slots released');
});

t.test('a closed connector refuses further calls', async (t) => {
  const c = connector(az.blobAccountUrl!, new RequestLimiter(), []);
  t.equal((await c.stat('obj-0'))?.size, Buffer.byteLength('body obj-0'));
  await c.close();
  await t.rejects(c.stat('obj-0'), { name: 'ConnectorError', kind: 'unavailable', message: /closed/ });
  await t.rejects(c.listPage('', null, 1), { name: 'ConnectorError', kind: 'unavailable' });
});
