import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { inspect } from 'node:util';
import t, { type Test } from 'tap';
import type { TargetPolicy } from '../src/notify/targets.ts';
import { deliverWebhook, verifySignature, WebhookError } from '../src/notify/webhook.ts';
import { startReceiver } from './helpers/webhook-receiver.ts';

/** Test receivers live on loopback: these deliveries allow private addresses (the guard has its own tests). */
const LOOPBACK: TargetPolicy = { allowedHosts: [], allowPrivate: true };

/** A real receiver on 127.0.0.1 answering with `respond`; its URL carries a token in the query string. */
async function startServer(t: Test, respond: (req: http.IncomingMessage, res: http.ServerResponse) => void) {
  const receiver = (await startReceiver(t, { respond }))!;
  return { url: `http://127.0.0.1:${receiver.port}/hook?token=abc`, received: receiver.requests, receiver };
}

async function rejection(p: Promise<unknown>): Promise<WebhookError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof WebhookError) return err;
    throw err;
  }
  throw new Error('expected a WebhookError');
}

t.test('2xx delivery is signed and carries the idempotency key', async (t) => {
  const { url, received } = await startServer(t, (_req, res) => {
    res.writeHead(204).end();
  });
  const body = { event: 'dsx.scan_result', outcome: 'malicious', name: 'naïve файл.txt' };
  const before = Math.floor(Date.now() / 1000);
  const result = await deliverWebhook({ url, secret: 's3cret', body, idempotencyKey: 'decision-42', target: LOOPBACK });
  t.same(result, { status: 204 });
  t.equal(received.length, 1);
  const [req] = received;
  t.equal(req.method, 'POST');
  t.equal(req.headers['content-type'], 'application/json');
  t.equal(req.headers['x-dsx-idempotency-key'], 'decision-42');
  const ts = Number(req.headers['x-dsx-timestamp']);
  t.ok(Number.isInteger(ts) && ts >= before && ts <= before + 5, 'timestamp is unix seconds');
  t.same(JSON.parse(req.body.toString('utf8')), body);
  const sig = String(req.headers['x-dsx-signature']);
  t.match(sig, /^sha256=[0-9a-f]{64}$/);
  t.ok(verifySignature('s3cret', req.body, sig), 'signature verifies over the raw bytes');
  t.ok(verifySignature('s3cret', req.body.toString('utf8'), sig), 'also as a string');
  t.notOk(verifySignature('other', req.body, sig), 'wrong secret fails');
  t.notOk(verifySignature('s3cret', Buffer.concat([req.body, Buffer.from(' ')]), sig), 'altered body fails');
  t.notOk(verifySignature('s3cret', req.body, sig.slice(0, -2)), 'truncated signature fails');
  t.notOk(verifySignature('s3cret', req.body, 'garbage'), 'malformed header fails');
});

t.test('a 500 is a retryable WebhookError naming the status, and the receiver\'s body, reason phrase and headers appear in no part of it', async (t) => {
  const marker = 'MARKER-7f3a-database-on-fire';
  const { url } = await startServer(t, (_req, res) => {
    res.writeHead(500, `${marker} reason`, { 'content-type': 'text/plain', 'x-debug': marker }).end(`${marker}\n`.repeat(100));
  });
  const err = await rejection(deliverWebhook({ url, secret: 's', body: {}, idempotencyKey: 'k1', target: LOOPBACK }));
  t.equal(err.retryable, true);
  t.equal(err.status, 500);
  t.match(err.message, /^webhook http:\/\/127\.0\.0\.1:\d+\/hook answered HTTP 500 Internal Server Error$/);
  t.notMatch(inspect(err, { depth: 10 }), marker, 'the marker is in no message, cause or stack');
  t.notMatch(err.message, /token=abc/, 'query string is not echoed into messages');
});

t.test('a redirect is not followed and says so', async (t) => {
  let followed = 0;
  const target = await startServer(t, () => {
    followed++;
  });
  const { url } = await startServer(t, (_req, res) => {
    res.writeHead(302, { location: target.url }).end();
  });
  const err = await rejection(deliverWebhook({ url, secret: 's', body: {}, idempotencyKey: 'k', target: LOOPBACK }));
  t.equal(err.retryable, false);
  t.match(err.message, /answered HTTP 302 Found; redirects are not followed/);
  t.equal(followed, 0);
  t.equal(target.receiver.connections(), 0, 'the redirect target saw no connection');
});

t.test('429 and 408 are retryable, 400 and 404 are not', async (t) => {
  let status = 0;
  const { url } = await startServer(t, (_req, res) => {
    res.writeHead(status).end();
  });
  for (const [code, retryable] of [[429, true], [408, true], [400, false], [404, false], [302, false]] as const) {
    status = code;
    const err = await rejection(deliverWebhook({ url, secret: 's', body: { code }, idempotencyKey: `k${code}`, target: LOOPBACK }));
    t.equal(err.status, code, `status ${code}`);
    t.equal(err.retryable, retryable, `${code} retryable=${retryable}`);
  }
});

t.test('a server that never answers -> retryable timeout', async (t) => {
  const { url, received } = await startServer(t, () => {
    /* never respond */
  });
  const started = Date.now();
  const err = await rejection(deliverWebhook({ url, secret: 's', body: { a: 1 }, idempotencyKey: 'k', timeoutMs: 300, target: LOOPBACK }));
  t.equal(err.retryable, true);
  t.equal(err.status, undefined);
  t.match(err.message, /did not answer within 300 ms/);
  t.ok(Date.now() - started < 5000, 'gave up promptly');
  t.equal(received.length, 1, 'the request did arrive');
});

t.test('connection refused -> retryable network error', async (t) => {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  const err = await rejection(deliverWebhook({ url: `http://127.0.0.1:${port}/`, secret: 's', body: {}, idempotencyKey: 'k', target: LOOPBACK }));
  t.equal(err.retryable, true);
  t.match(err.message, /could not be reached: ECONNREFUSED$/);
});

t.test('a bad URL is not retryable and is not echoed (its query string may hold a token)', async (t) => {
  const bad = await rejection(deliverWebhook({ url: 'not a url?token=abc', secret: 's', body: {}, idempotencyKey: 'k' }));
  t.equal(bad.retryable, false);
  t.match(bad.message, /is not a valid URL/);
  t.notMatch(bad.message, /token/);
  const ftp = await rejection(deliverWebhook({ url: 'ftp://127.0.0.1/x', secret: 's', body: {}, idempotencyKey: 'k' }));
  t.equal(ftp.retryable, false);
  const creds = await rejection(deliverWebhook({ url: 'http://user:pa55word@127.0.0.1/x?token=abc', secret: 's', body: {}, idempotencyKey: 'k', target: LOOPBACK }));
  t.equal(creds.retryable, false);
  t.match(creds.message, /must not carry a user name or password/);
  t.notMatch(creds.message, /pa55word|token=abc/);
});

t.test('without a target policy a delivery reaches only public addresses', async (t) => {
  const { url, receiver } = await startServer(t, (_req, res) => {
    res.writeHead(204).end();
  });
  const err = await rejection(deliverWebhook({ url, secret: 's', body: {}, idempotencyKey: 'k' }));
  t.equal(err.retryable, false);
  t.match(err.message, /127\.0\.0\.1 is not a public address \(loopback\)/);
  t.equal(receiver.connections(), 0);
});
