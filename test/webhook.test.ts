import http from 'node:http';
import type { AddressInfo } from 'node:net';
import t, { type Test } from 'tap';
import { deliverWebhook, verifySignature, WebhookError } from '../src/notify/webhook.ts';

interface Received {
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  method: string | undefined;
}

/** A real HTTP server on 127.0.0.1 that records requests and answers with `respond`. */
async function startServer(
  t: Test,
  respond: (req: http.IncomingMessage, res: http.ServerResponse) => void,
): Promise<{ url: string; received: Received[] }> {
  const received: Received[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ headers: req.headers, body: Buffer.concat(chunks), method: req.method });
      respond(req, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/hook?token=abc`, received };
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
  const result = await deliverWebhook({ url, secret: 's3cret', body, idempotencyKey: 'decision-42' });
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

t.test('500 -> retryable WebhookError with status', async (t) => {
  const { url } = await startServer(t, (_req, res) => {
    res.writeHead(500, { 'content-type': 'text/plain' }).end('database on fire');
  });
  const err = await rejection(deliverWebhook({ url, secret: 's', body: {}, idempotencyKey: 'k1' }));
  t.equal(err.retryable, true);
  t.equal(err.status, 500);
  t.match(err.message, /HTTP 500: database on fire/);
  t.notMatch(err.message, /token=abc/, 'query string is not echoed into messages');
});

t.test('429 and 408 are retryable, 400 and 404 are not', async (t) => {
  let status = 0;
  const { url } = await startServer(t, (_req, res) => {
    res.writeHead(status).end();
  });
  for (const [code, retryable] of [[429, true], [408, true], [400, false], [404, false], [302, false]] as const) {
    status = code;
    const err = await rejection(deliverWebhook({ url, secret: 's', body: { code }, idempotencyKey: `k${code}` }));
    t.equal(err.status, code, `status ${code}`);
    t.equal(err.retryable, retryable, `${code} retryable=${retryable}`);
  }
});

t.test('a server that never answers -> retryable timeout', async (t) => {
  const { url, received } = await startServer(t, () => {
    /* never respond */
  });
  const started = Date.now();
  const err = await rejection(deliverWebhook({ url, secret: 's', body: { a: 1 }, idempotencyKey: 'k', timeoutMs: 300 }));
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
  const err = await rejection(deliverWebhook({ url: `http://127.0.0.1:${port}/`, secret: 's', body: {}, idempotencyKey: 'k' }));
  t.equal(err.retryable, true);
  t.match(err.message, /could not be reached/);
});

t.test('a bad URL is not retryable', async (t) => {
  const bad = await rejection(deliverWebhook({ url: 'not a url', secret: 's', body: {}, idempotencyKey: 'k' }));
  t.equal(bad.retryable, false);
  const ftp = await rejection(deliverWebhook({ url: 'ftp://127.0.0.1/x', secret: 's', body: {}, idempotencyKey: 'k' }));
  t.equal(ftp.retryable, false);
});
