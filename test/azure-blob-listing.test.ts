import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import t from 'tap';
import { AzureBlobConnector } from '../src/connectors/azure-blob/connector.ts';
import { RequestLimiter } from '../src/connectors/rate-limit.ts';
import { ConnectorError, type Page } from '../src/connectors/types.ts';
import { AZURITE_ACCOUNT, AZURITE_KEY, readAll, startAzurite, uploadBlobs } from '../src/testing/azurite.ts';
import { EICAR } from '../src/testing/fixtures.ts';

const az = await startAzurite({ blob: true });
t.teardown(() => az.stop());
const service = BlobServiceClient.fromConnectionString(az.connectionString);
let containers = 0;

/** A fresh container of the emulator (each test gets its own). */
async function freshContainer(): Promise<ContainerClient> {
  const c = service.getContainerClient(`listing-${++containers}`);
  await c.create();
  return c;
}

function connector(settings: Record<string, unknown>, limiter = new RequestLimiter()): AzureBlobConnector {
  return new AzureBlobConnector({
    settings: { account_url: az.blobAccountUrl, ...settings },
    credentials: { accountName: AZURITE_ACCOUNT, accountKey: AZURITE_KEY },
    limiter,
  });
}

async function listAll(c: AzureBlobConnector, scope: string, pageSize: number): Promise<{ ids: string[]; pages: Page[] }> {
  const ids: string[] = [];
  const pages: Page[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < 10_000; i++) {
    const page: Page = await c.listPage(scope, cursor, pageSize);
    pages.push(page);
    if (page.objects.length > pageSize) throw new Error(`page of ${page.objects.length} > ${pageSize}`);
    ids.push(...page.objects.map((o) => o.identity));
    if (page.nextCursor === null) return { ids, pages };
    cursor = page.nextCursor;
  }
  throw new Error('listing did not end');
}

t.test('a scope lists page by page; a second connector resumes from a recorded cursor with no gaps and no duplicates', async (t) => {
  const container = await freshContainer();
  const names = Array.from({ length: 23 }, (_, i) => `docs/file-${String(i).padStart(2, '0')}.txt`);
  await uploadBlobs(container, Object.fromEntries(names.map((n) => [n, `content of ${n}`])));
  await uploadBlobs(container, { 'docs/sub/': '', 'other/x.txt': 'outside the scope' });

  const first = connector({ container: container.containerName });
  const whole = await listAll(first, 'docs', 4);
  t.same(whole.ids, names, 'every blob of the scope once, in name order');
  t.ok(whole.pages.length >= 6, `several pages (${whole.pages.length})`);
  t.same(whole.pages.flatMap((p) => p.skipped ?? []), [{ identity: 'docs/sub/', reason: 'directory_marker' }], 'the folder marker is skipped, not an object');
  const o = whole.pages[0]!.objects[0]!;
  t.match(o.etag, /^"0x[0-9A-F]+"$/, 'ETags are quoted');
  t.equal(o.size, Buffer.byteLength(`content of ${names[0]}`));
  t.ok(o.mtime && !Number.isNaN(Date.parse(o.mtime)), 'mtime is an ISO time');

  // The enumeration "crashes" after two pages; a new connector instance continues from the recorded cursor.
  const p1 = await first.listPage('docs', null, 4);
  const p2 = await first.listPage('docs', p1.nextCursor, 4);
  const second = connector({ container: container.containerName });
  const rest: string[] = [];
  let cursor = p2.nextCursor;
  while (cursor !== null) {
    const p = await second.listPage('docs', cursor, 4);
    rest.push(...p.objects.map((x) => x.identity));
    cursor = p.nextCursor;
  }
  const seen = [...p1.objects, ...p2.objects].map((x) => x.identity).concat(rest);
  t.same(seen, names, 'first two pages + the rest = the scope, exactly once each');
  t.equal(new Set(seen).size, seen.length, 'no duplicates');
});

t.test('internal blobs take room in a service page without becoming objects, and the page is filled from the next', async (t) => {
  const container = await freshContainer();
  // The default quarantine prefix lies inside the integration: its blobs sort first and are internal.
  await uploadBlobs(container, { 'dsx-quarantine/a': 'q', 'dsx-quarantine/b': 'q', 'dsx-quarantine/c': 'q', 'e1': '1', 'e2': '2', 'e3': '3' });
  const c = connector({ container: container.containerName });
  const page = await c.listPage('', null, 3);
  t.same(page.objects.map((o) => o.identity), ['e1', 'e2', 'e3'], 'a full page of objects');
  t.same(page.skipped?.map((s) => [s.identity, s.reason]), [['dsx-quarantine/a', 'internal'], ['dsx-quarantine/b', 'internal'], ['dsx-quarantine/c', 'internal']]);
  t.equal(page.nextCursor, null, 'the scope is exhausted');
  t.ok(c.isInternal('dsx-quarantine/a'));
  t.notOk(c.isInternal('e1'));
});

t.test('identities are relative to the integration prefix and cannot escape it', async (t) => {
  const container = await freshContainer();
  await uploadBlobs(container, { 'tenant-a/in/x.txt': 'a', 'tenant-a/top.txt': 'a', 'tenant-b/secret.txt': 'b', 'tenant-ab/y.txt': 'ab' });
  const c = connector({ container: container.containerName, prefix: 'tenant-a' });
  t.same((await listAll(c, '', 10)).ids, ['in/x.txt', 'top.txt'], 'only blobs under "tenant-a/"');
  t.same((await listAll(c, 'in', 10)).ids, ['in/x.txt']);
  t.equal(c.identityOfBlob('tenant-a/in/x.txt'), 'in/x.txt');
  t.equal(c.identityOfBlob('tenant-b/secret.txt'), null, 'outside the prefix');
  t.equal(c.identityOfBlob('tenant-a/dsx-quarantine/x'), null, 'internal');
  t.equal(c.blobOf('in/x.txt'), 'tenant-a/in/x.txt');
  await t.rejects(c.open('../tenant-b/secret.txt'), { name: 'ConnectorError', kind: 'escape' }, 'a ".." segment would address another tenant');
  await t.rejects(c.listPage('../tenant-b', null, 10), { name: 'ConnectorError', kind: 'escape' });
  const cursor = (await c.listPage('', null, 1)).nextCursor!;
  await t.rejects(c.listPage('in', cursor, 1), { name: 'ConnectorError', kind: 'invalid', message: /belongs to listing prefix/ }, 'a cursor of another scope is refused');
  await t.rejects(c.listPage('', 'garbage', 1), { name: 'ConnectorError', kind: 'invalid' });
});

t.test('odd names round-trip verbatim through list, stat and open', async (t) => {
  const container = await freshContainer();
  const odd = ['a b.txt', 'plus+sign', 'pct%20x', 'q?x#y', ' lead', 'x//y', 'ünï/日本語.txt', '😀.bin', 'semi;colon&amp'];
  await uploadBlobs(container, Object.fromEntries(odd.map((n) => [n, `bytes of ${n}`])));
  await uploadBlobs(container, { 'back\\slash': 'bs' });
  const c = connector({ container: container.containerName });
  const ids = (await listAll(c, '', 3)).ids;
  const expected = [...odd, 'back/slash'].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  t.same([...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)), expected, 'listed verbatim (azurite turns a backslash into "/")');
  for (const id of odd) {
    const opened = await c.open(id);
    t.equal((await readAll(opened.stream)).toString(), `bytes of ${id}`, `read back ${JSON.stringify(id)}`);
    const st = await c.stat(id);
    t.equal(st?.identity, id);
    t.equal(st?.etag, opened.etag, 'stat and open agree on the ETag');
  }
  t.equal(await c.stat('no such blob'), null, 'stat of a missing blob is null');
  await t.rejects(c.open('no such blob'), { name: 'ConnectorError', kind: 'not_found' });
});

t.test('EICAR and empty content are read back intact, with length, ETag and time', async (t) => {
  const container = await freshContainer();
  await uploadBlobs(container, { 'eicar.com': EICAR, 'empty': '' });
  const c = connector({ container: container.containerName });
  const opened = await c.open('eicar.com');
  t.equal(opened.size, EICAR.length);
  t.match(opened.etag, /^"0x/);
  t.ok(opened.mtime);
  t.equal((await readAll(opened.stream)).toString('latin1'), EICAR, 'byte for byte');
  const empty = await c.open('empty');
  t.equal(empty.size, 0);
  t.equal((await readAll(empty.stream)).length, 0);
});

t.test('open with the listed ETag refuses content uploaded since', async (t) => {
  const container = await freshContainer();
  await uploadBlobs(container, { doc: 'v1' });
  const c = connector({ container: container.containerName });
  const listed = (await c.listPage('', null, 10)).objects[0]!;
  const v1 = await c.open('doc', { etag: listed.etag });
  t.equal((await readAll(v1.stream)).toString(), 'v1', 'the listed version reads');
  await uploadBlobs(container, { doc: 'v2' });
  await t.rejects(c.open('doc', { etag: listed.etag }), { name: 'ConnectorError', kind: 'not_found', message: /changed since it was listed/ });
  t.equal((await readAll((await c.open('doc')).stream)).toString(), 'v2', 'without a version, the current content');
});

t.test('a streaming read holds its limiter slot until the stream closes', async (t) => {
  const container = await freshContainer();
  await uploadBlobs(container, { big: Buffer.alloc(256 * 1024, 7) });
  const limiter = new RequestLimiter({ maxInFlight: 1 });
  const c = connector({ container: container.containerName }, limiter);
  const opened = await c.open('big');
  t.equal(limiter.inFlight, 1, 'the download counts as in flight while its body is unread');
  const stat = c.stat('big');
  await new Promise((r) => setImmediate(r));
  t.equal(limiter.waiting, 1, 'the next request waits for the slot');
  opened.stream.destroy();
  t.equal((await stat)?.size, 256 * 1024, 'and runs once the stream is closed');
  t.equal(limiter.inFlight, 0);
});
