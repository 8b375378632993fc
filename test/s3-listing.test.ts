/**
 * S3 enumeration against a real fauxqs server: paging on continuation tokens, resuming from a recorded
 * cursor in another connector instance, folder markers and the quarantine area reported as skipped,
 * odd keys round-tripping byte for byte.
 */
import { PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import t, { type Test } from 'tap';
import { RequestLimiter } from '../src/connectors/rate-limit.ts';
import { S3Connector } from '../src/connectors/s3/connector.ts';
import { ConnectorError, type Page, type SkippedEntry } from '../src/connectors/types.ts';
import { startFaultProxy } from '../src/testing/fault-proxy.ts';
import { startLocalFauxqs, type LocalFauxqs } from '../src/testing/s3-servers.ts';

const BUCKET = 'scan-bucket';

let s3: LocalFauxqs;
let seed: S3Client;
t.before(async () => {
  s3 = await startLocalFauxqs({ buckets: [BUCKET] });
  seed = s3.client();
});
t.teardown(() => s3.stop());
t.beforeEach(() => s3.server.emptyBucket(BUCKET));

function connector(t: Test, settings: Record<string, unknown> = {}, endpoint = s3.endpoint): S3Connector {
  const c = new S3Connector({
    settings: { bucket: BUCKET, endpoint, ...settings },
    credentials: s3.credentials,
    limiter: new RequestLimiter({ maxInFlight: 4 }),
  });
  t.teardown(() => c.close());
  return c;
}

async function put(key: string, body: string | Buffer = `contents of ${key}`): Promise<void> {
  await seed.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
}

/** The error `fn` throws. */
function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

async function listAll(c: S3Connector, scope: string, pageSize: number, cursor: string | null = null): Promise<{ ids: string[]; pages: Page[] }> {
  const ids: string[] = [];
  const pages: Page[] = [];
  for (let i = 0; i < 10_000; i++) {
    const page = await c.listPage(scope, cursor, pageSize);
    pages.push(page);
    ids.push(...page.objects.map((o) => o.identity));
    if (page.nextCursor === null) return { ids, pages };
    cursor = page.nextCursor;
  }
  throw new Error('enumeration did not terminate');
}

t.test('a scan paged 5 at a time and resumed by a second connector from the recorded cursor gets every object once', async (t) => {
  const keys = Array.from({ length: 57 }, (_, i) => `data/obj-${String(i).padStart(3, '0')}`);
  for (const k of keys) await put(k);
  await put('data/folder/'); // a folder marker
  await put('elsewhere/not-in-prefix');

  const first = connector(t, { prefix: 'data' });
  const seen: string[] = [];
  const skipped: SkippedEntry[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < 4; i++) {
    const page: Page = await first.listPage('', cursor, 5);
    t.equal(page.objects.length, 5, `page ${i} is full`);
    seen.push(...page.objects.map((o) => o.identity));
    skipped.push(...(page.skipped ?? []));
    cursor = page.nextCursor;
    t.type(cursor, 'string');
  }
  await first.close();

  // A restarted scan: a new connector (new client, new limiter) continues from the recorded cursor.
  const second = connector(t, { prefix: 'data/' });
  const rest = await listAll(second, '', 5, cursor);
  const all = [...seen, ...rest.ids];
  t.same(all, keys.map((k) => k.slice('data/'.length)), 'exactly the rest, in order: no duplicates, no gaps');
  t.equal(new Set(all).size, all.length);
  skipped.push(...rest.pages.flatMap((p) => p.skipped ?? []));
  t.same(skipped, [{ identity: 'folder/', reason: 'directory_marker', detail: 'a key ending in "/" marks a folder' }]);
  const page = await second.listPage('', null, 1);
  t.match(page.objects[0], { identity: 'obj-000', size: 'contents of data/obj-000'.length, versionId: null });
  t.match(page.objects[0]!.etag, /^[0-9a-f]{32}$/, 'the ETag comes without quotes, as in S3 events');
  t.ok(!Number.isNaN(Date.parse(page.objects[0]!.mtime!)));
});

t.test('a scope root lists only the keys under <prefix><root>/, not those that merely share its first letters', async (t) => {
  for (const k of ['p/a/b/1', 'p/a/b/2', 'p/a/bc/3', 'p/a/b', 'p/z']) await put(k);
  const c = connector(t, { prefix: 'p/' });
  t.same((await listAll(c, 'a/b', 10)).ids, ['a/b/1', 'a/b/2']);
  t.same((await listAll(c, '', 10)).ids, ['a/b', 'a/b/1', 'a/b/2', 'a/bc/3', 'z']);
  await t.rejects(c.listPage('../x', null, 10), { name: 'ConnectorError', message: /"\.\." segment/ });
});

t.test('a page larger than 1,000 objects is assembled from several calls and ends on a token S3 gave out', async (t) => {
  const keys = Array.from({ length: 1003 }, (_, i) => `big/${String(i).padStart(5, '0')}`);
  await Promise.all(Array.from({ length: 16 }, async (_, w) => {
    for (let i = w; i < keys.length; i += 16) await put(keys[i]!, 'x');
  }));
  const c = connector(t);
  const page = await c.listPage('big', null, 1001);
  t.equal(page.objects.length, 1001);
  t.type(page.nextCursor, 'string');
  const rest = await c.listPage('big', page.nextCursor, 1001);
  t.same(rest.objects.map((o) => o.identity), keys.slice(1001));
  t.equal(rest.nextCursor, null);
});

t.test('the quarantine area inside the listed prefix is skipped in one jump, not walked key by key', async (t) => {
  for (const k of ['a-first', 'b-second']) await put(k);
  for (let i = 0; i < 40; i++) await put(`dsx-quarantine/old/${i}`);
  await put('dsx-quarantine/.dsx-probe/left-over');
  for (const k of ['e-after', 'z-last']) await put(k);
  const proxy = await startFaultProxy({ target: s3.endpoint });
  t.teardown(() => proxy.close());
  const c = connector(t, {}, proxy.url);
  const { ids, pages } = await listAll(c, '', 3);
  t.same(ids, ['a-first', 'b-second', 'e-after', 'z-last']);
  t.same(pages.flatMap((p) => p.skipped ?? []).filter((s) => s.reason === 'internal').map((s) => s.identity), ['dsx-quarantine/']);
  t.ok(proxy.stats.requests <= 4, `listed with ${proxy.stats.requests} requests for 45 keys`);
  t.equal(c.isInternal('dsx-quarantine/old/1'), true);
  t.equal(c.identityOfKey('dsx-quarantine/old/1'), null);

  const inside = await c.listPage('dsx-quarantine', null, 10);
  t.same(inside.objects, [], 'a scope inside the quarantine area lists nothing');
  t.equal(inside.skipped?.[0]?.reason, 'internal');
});

t.test('odd keys round-trip byte for byte: spaces, +, unicode, //, a leading /, 1,000 and 1,024 bytes', async (t) => {
  const odd = [
    'with space.txt',
    'a+b=c&d.txt',
    'ünïcödé/日本語/😀.txt',
    'double//slash',
    '/leading-slash',
    '%41-not-decoded',
    'dots/../not-a-parent',
    'k'.repeat(1000),
    `${'d/'.repeat(100)}${'e'.repeat(824)}`, // 1,024 bytes, S3's limit
  ];
  for (const k of odd) await put(k, Buffer.from(`body of ${k}`));
  const c = connector(t);
  // One page: fauxqs sorts keys with localeCompare but resumes after a token with `<`, so its pages
  // repeat or miss punctuation and non-ASCII keys (AWS orders by UTF-8 bytes, consistently).
  const page = await c.listPage('', null, 100);
  const ids = page.objects.map((o) => o.identity);
  t.equal(page.nextCursor, null);
  t.same([...ids].sort(), [...odd].sort(), 'every key listed verbatim, once');
  for (const id of ids) {
    t.equal(c.keyOf(id), id);
    t.equal(c.identityOfKey(id), id);
    const opened = await c.open(id);
    const chunks: Buffer[] = [];
    for await (const chunk of opened.stream) chunks.push(chunk as Buffer);
    t.same(Buffer.concat(chunks), Buffer.from(`body of ${id}`), `content of ${JSON.stringify(id.slice(0, 40))}`);
  }
  t.match(caught(() => c.keyOf('x'.repeat(1025))), { kind: 'invalid', message: /at most 1024/ });

  const prefixed = connector(t, { prefix: 'double/' });
  t.same((await listAll(prefixed, '', 10)).ids, ['/slash'], 'under a prefix, the rest of the key is the identity, verbatim');
  t.equal(prefixed.keyOf('/slash'), 'double//slash');
  t.equal(prefixed.identityOfKey('other/key'), null);
});

t.test('a cursor that is not one, or belongs to another scope, is refused with a clear error', async (t) => {
  for (let i = 0; i < 3; i++) await put(`s/${i}`);
  const c = connector(t);
  const page = await c.listPage('s', null, 1);
  await t.rejects(c.listPage('s', 'garbage', 1), { kind: 'invalid', message: /not an S3 listing cursor/ });
  await t.rejects(c.listPage('other', page.nextCursor, 1), { kind: 'invalid', message: /belongs to the listing of "s\/"/ });
  await t.rejects(c.listPage('s', null, 0), ConnectorError);
});
