/**
 * The SSRF guard against real receivers on loopback: every known spelling of a loopback address is
 * refused before a connection is made, a rebinding name cannot get a second answer in, a failing
 * resolver fails closed, and DSX_WEBHOOK_ALLOW_PRIVATE / DSX_WEBHOOK_ALLOWED_HOSTS keep their meaning.
 */
import t, { type Test } from 'tap';
import type { ResolvedAddress, Resolver, TargetPolicy } from '../src/notify/targets.ts';
import { deliverWebhook, verifySignature, WebhookError } from '../src/notify/webhook.ts';
import { startReceiver, type Receiver } from './helpers/webhook-receiver.ts';

const SECRET = 'ssrf-secret';

async function rejection(p: Promise<unknown>): Promise<WebhookError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof WebhookError) return err;
    throw err;
  }
  throw new Error('expected a WebhookError');
}

/** A resolver that answers `answers` for every name and counts its calls. */
function fixedResolver(...answers: string[]): Resolver & { calls: number } {
  const resolve = Object.assign(async (): Promise<ResolvedAddress[]> => {
    resolve.calls++;
    return answers.map((address) => ({ address }));
  }, { calls: 0 });
  return resolve;
}

function deliver(url: string, target: TargetPolicy, timeoutMs = 2_000) {
  return deliverWebhook({ url, secret: SECRET, body: { event: 'dsx.scan_result' }, idempotencyKey: 'decision-1', timeoutMs, target });
}

const GUARDED: TargetPolicy = { allowedHosts: [], allowPrivate: false };

/** A URL host spelling of a loopback address, the reason its refusal must name, and whether the OS routes it to loopback. */
interface Form {
  url: string;
  why: RegExp;
  routes: boolean;
}

const LOOPBACK_V4 = /127\.0\.0\.1 is not a public address \(loopback\)/;

/** Every spelling of 127.0.0.1 issue 13 lists. */
function v4Forms(port: number): Form[] {
  const at = (host: string, why: RegExp, routes: boolean): Form => ({ url: `http://${host}:${port}/hook`, why, routes });
  return [
    at('127.0.0.1', LOOPBACK_V4, true),
    at('[::ffff:127.0.0.1]', /::ffff:7f00:1 is not a public address \(IPv4-mapped 127\.0\.0\.1: loopback\)/, true),
    at('[::ffff:7f00:1]', /IPv4-mapped 127\.0\.0\.1: loopback/, true),
    at('[0:0:0:0:0:ffff:7f00:1]', /IPv4-mapped 127\.0\.0\.1: loopback/, true),
    at('[::ffff:0:127.0.0.1]', /IPv4-translated 127\.0\.0\.1: loopback/, false),
    at('[::127.0.0.1]', /::7f00:1 is not a public address \(IPv4-compatible 127\.0\.0\.1: loopback\)/, false),
    at('[64:ff9b::127.0.0.1]', /NAT64 127\.0\.0\.1: loopback/, false),
    at('[64:ff9b:1::7f00:1]', /local-use NAT64/, false),
    at('[2002:7f00:1::]', /6to4 127\.0\.0\.1: loopback/, false),
    at('[2001:0:4136:e378:8000:63bf:80ff:fffe]', /Teredo client 127\.0\.0\.1: loopback/, false),
    at('2130706433', LOOPBACK_V4, true),
    at('0x7f000001', LOOPBACK_V4, true),
    at('0177.0.0.1', LOOPBACK_V4, true),
    at('127.1', LOOPBACK_V4, true),
    at('0x7f.0.0.1', LOOPBACK_V4, true),
    at('0', /0\.0\.0\.0 is not a public address \(unspecified\)/, true),
    at('localhost', /host localhost resolves to 127\.0\.0\.1, not a public address \(loopback\)/, true),
  ];
}

/** The spellings of ::1 (and of the unspecified address, which reaches it). */
function v6Forms(port: number): Form[] {
  const at = (host: string, why: RegExp): Form => ({ url: `http://${host}:${port}/hook`, why, routes: true });
  return [
    at('[::1]', /::1 is not a public address \(loopback\)/),
    at('[0:0:0:0:0:0:0:1]', /::1 is not a public address \(loopback\)/),
    at('[::]', /:: is not a public address \(unspecified\)/),
  ];
}

async function expectRefused(t: Test, receiver: Receiver, url: string, why: RegExp, target: TargetPolicy = GUARDED): Promise<void> {
  const err = await rejection(deliver(url, target));
  t.equal(err.retryable, false, `${url}: refused for good`);
  t.match(err.message, why, `${url}: the refusal names the reason`);
  t.equal(receiver.connections(), 0, `${url}: the receiver saw no connection`);
}

t.test('every spelling of 127.0.0.1 is refused before any connection to a receiver on 127.0.0.1', async (t) => {
  const receiver = (await startReceiver(t, { host: '127.0.0.1' }))!;
  for (const { url, why } of v4Forms(receiver.port)) await expectRefused(t, receiver, url, why);
});

t.test('every spelling of ::1 is refused before any connection to a receiver on ::1', async (t) => {
  const receiver = await startReceiver(t, { host: '::1' });
  if (!receiver) {
    t.comment('this machine has no IPv6 loopback: the ::1 forms are covered by address classification only');
    t.pass('no ::1 receiver could be started');
    return;
  }
  for (const { url, why } of v6Forms(receiver.port)) await expectRefused(t, receiver, url, why);
  // The same spellings reach the receiver when private addresses are allowed: the guard is what stopped them.
  for (const { url } of v6Forms(receiver.port)) {
    t.same(await deliver(url, { allowedHosts: [], allowPrivate: true }), { status: 204 }, `${url} delivered when allowed`);
  }
  t.equal(receiver.requests.length, v6Forms(receiver.port).length);
});

t.test('a name whose answer holds a loopback address in any form is refused, whatever else it answers', async (t) => {
  const receiver = (await startReceiver(t))!;
  const url = `http://hooks.example.test:${receiver.port}/hook`;
  const answers: [string[], RegExp][] = [
    [['127.0.0.1'], /resolves to 127\.0\.0\.1, not a public address \(loopback\)/],
    [['::ffff:127.0.0.1'], /resolves to ::ffff:7f00:1, not a public address \(IPv4-mapped 127\.0\.0\.1: loopback\)/],
    [['::ffff:7f00:1'], /IPv4-mapped 127\.0\.0\.1: loopback/],
    [['64:ff9b::7f00:1'], /NAT64 127\.0\.0\.1: loopback/],
    [['8.8.8.8', '127.0.0.1'], /resolves to 127\.0\.0\.1/],
    [['127.0.0.1', '8.8.8.8'], /resolves to 127\.0\.0\.1/],
    [['169.254.169.254'], /link-local/],
    [['0177.0.0.1'], /resolved to "0177\.0\.0\.1", which is not an IP address/],
    [['2130706433'], /which is not an IP address/],
  ];
  for (const [answer, why] of answers) {
    const resolve = fixedResolver(...answer);
    await expectRefused(t, receiver, url, why, { ...GUARDED, resolve });
    t.equal(resolve.calls, 1, `${answer.join(', ')}: resolved once`);
  }
});

t.test('a rebinding name cannot get a second answer in: the one vetted resolution is the one connected to', async (t) => {
  const receiver = (await startReceiver(t))!;
  const url = `http://rebind.example.test:${receiver.port}/hook`;

  // Public on the first call, loopback on any later one. The delivery connects to the public address
  // (8.8.8.8 on the receiver's port, which answers nothing useful): it fails, and never reaches 127.0.0.1.
  let calls = 0;
  const rebinding: Resolver = async () => [{ address: ++calls === 1 ? '8.8.8.8' : '127.0.0.1' }];
  const err = await rejection(deliver(url, { ...GUARDED, resolve: rebinding }, 500));
  t.equal(calls, 1, 'the name was resolved exactly once');
  t.equal(err.retryable, true, 'the public address was not reachable: a network failure, not a refusal');
  t.match(err.message, /could not be reached|did not answer/);
  t.equal(receiver.connections(), 0, 'the receiver on 127.0.0.1 saw no connection');

  // The other order: loopback first is refused, and no later answer is asked for.
  let reversed = 0;
  const reverse: Resolver = async () => [{ address: ++reversed === 1 ? '127.0.0.1' : '8.8.8.8' }];
  const refused = await rejection(deliver(url, { ...GUARDED, resolve: reverse }));
  t.equal(refused.retryable, false);
  t.equal(reversed, 1);
  t.equal(receiver.connections(), 0);
});

t.test('a resolver that fails, answers nothing or never answers fails closed', async (t) => {
  const receiver = (await startReceiver(t))!;
  const url = `http://hooks.example.test:${receiver.port}/hook`;
  const failing: Resolver = async () => {
    throw Object.assign(new Error('getaddrinfo EAI_AGAIN hooks.example.test'), { code: 'EAI_AGAIN' });
  };
  const failed = await rejection(deliver(url, { ...GUARDED, resolve: failing }));
  t.equal(failed.retryable, true, 'a lookup failure may pass later: the next attempt vets again');
  t.match(failed.message, /^webhook host hooks\.example\.test could not be resolved \(EAI_AGAIN\); nothing was sent$/);

  const empty = await rejection(deliver(url, { ...GUARDED, resolve: fixedResolver() }));
  t.match(empty.message, /resolved to no address; nothing was sent/);

  const garbage = await rejection(deliver(url, { ...GUARDED, resolve: (async () => 'not a list') as unknown as Resolver }));
  t.match(garbage.message, /resolved to no address/);

  const hanging: Resolver = () => new Promise(() => {});
  const hung = await rejection(deliver(url, { ...GUARDED, resolve: hanging }, 200));
  t.equal(hung.retryable, true);
  t.match(hung.message, /did not answer within 200 ms/);

  // Fail closed with private addresses allowed too: there is nothing to connect to.
  const allowed = await rejection(deliver(url, { allowedHosts: [], allowPrivate: true, resolve: failing }));
  t.match(allowed.message, /could not be resolved/);
  t.equal(receiver.connections(), 0, 'no connection in any of these cases');
});

t.test('with private addresses allowed, the spellings that route to loopback deliver, signed as before', async (t) => {
  const receiver = (await startReceiver(t))!;
  const allow: TargetPolicy = { allowedHosts: [], allowPrivate: true };
  // The forms this operating system routes to 127.0.0.1: the guard, not the network, is what stopped them above.
  const routable = v4Forms(receiver.port).filter((f) => f.routes).map((f) => f.url);
  for (const [i, url] of routable.entries()) {
    const before = Math.floor(Date.now() / 1000);
    const body = { event: 'dsx.scan_result', n: i };
    const res = await deliverWebhook({ url, secret: SECRET, body, idempotencyKey: `decision-${i}`, target: allow });
    t.same(res, { status: 204 }, `${url} delivered`);
    const got = receiver.requests[i]!;
    t.equal(got.method, 'POST');
    t.equal(got.url, '/hook');
    t.equal(got.headers['content-type'], 'application/json');
    t.same(JSON.parse(got.body.toString('utf8')), body);
    t.ok(verifySignature(SECRET, got.body, String(got.headers['x-dsx-signature'])), 'X-DSX-Signature verifies');
    const ts = Number(got.headers['x-dsx-timestamp']);
    t.ok(Number.isInteger(ts) && ts >= before && ts <= before + 5, 'X-DSX-Timestamp is unix seconds');
    t.equal(got.headers['x-dsx-idempotency-key'], `decision-${i}`);
  }
  t.equal(receiver.requests.length, routable.length);

  // A resolved name goes through the same single, vetted lookup.
  const resolve = fixedResolver('127.0.0.1');
  t.same(await deliver(`http://hooks.internal:${receiver.port}/hook`, { ...allow, resolve }), { status: 204 });
  t.equal(resolve.calls, 1);
  t.equal(receiver.requests.at(-1)!.headers.host, `hooks.internal:${receiver.port}`, 'the Host header names the URL host');
});

t.test('DSX_WEBHOOK_ALLOWED_HOSTS restricts names before any lookup and does not lift the address guard', async (t) => {
  const receiver = (await startReceiver(t))!;
  const resolve = fixedResolver('127.0.0.1');
  const other = await rejection(deliver(`http://elsewhere.test:${receiver.port}/hook`, { allowedHosts: ['hooks.internal'], allowPrivate: true, resolve }));
  t.equal(other.retryable, false);
  t.match(other.message, /host elsewhere\.test is not in DSX_WEBHOOK_ALLOWED_HOSTS/);
  t.equal(resolve.calls, 0, 'a host outside the list is not even resolved');

  const guarded = await rejection(deliver(`http://hooks.internal:${receiver.port}/hook`, { allowedHosts: ['hooks.internal'], allowPrivate: false, resolve }));
  t.match(guarded.message, /resolves to 127\.0\.0\.1, not a public address/);
  t.equal(receiver.connections(), 0);

  t.same(await deliver(`http://HOOKS.internal:${receiver.port}/hook`, { allowedHosts: ['hooks.internal'], allowPrivate: true, resolve }), { status: 204 });
  t.equal(receiver.requests.length, 1);
});
