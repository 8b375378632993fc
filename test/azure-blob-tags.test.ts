import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import t from 'tap';
import { AzureBlobConnector } from '../src/connectors/azure-blob/connector.ts';
import { RequestLimiter } from '../src/connectors/rate-limit.ts';
import { AZURITE_ACCOUNT, AZURITE_KEY, readAll, startAzurite, uploadBlobs } from '../src/testing/azurite.ts';
import { EICAR } from '../src/testing/fixtures.ts';

const az = await startAzurite({ blob: true });
t.teardown(() => az.stop());
const service = BlobServiceClient.fromConnectionString(az.connectionString);
let n = 0;

async function freshContainer(): Promise<ContainerClient> {
  const c = service.getContainerClient(`tags-${++n}`);
  await c.create();
  return c;
}

function connector(container: string, tagMode?: string): AzureBlobConnector {
  return new AzureBlobConnector({
    settings: { account_url: az.blobAccountUrl, container, ...(tagMode ? { tag_mode: tagMode } : {}) },
    credentials: { accountName: AZURITE_ACCOUNT, accountKey: AZURITE_KEY },
    limiter: new RequestLimiter(),
  });
}

/** What a tag write must never change: the bytes, their MD5 and the creation time. */
async function contentOf(container: ContainerClient, name: string) {
  const p = await container.getBlobClient(name).getProperties();
  const bytes = (await readAll((await container.getBlobClient(name).download()).readableStreamBody!)).toString('latin1');
  return { bytes, md5: Buffer.from(p.contentMD5 ?? []).toString('hex'), createdOn: p.createdOn?.toISOString(), etag: p.etag, lastModified: p.lastModified?.toISOString() };
}

t.test("index tags are merged into the blob's own tags without touching its content, ETag or time", async (t) => {
  const container = await freshContainer();
  await uploadBlobs(container, { 'bad file.exe': EICAR });
  const blob = container.getBlobClient('bad file.exe');
  await blob.setTags({ owner: 'finance', project: 'x' });
  const before = await contentOf(container, 'bad file.exe');
  const c = connector(container.containerName);

  const r = await c.tag('bad file.exe', { 'dsx-verdict': 'malicious', 'dsx-reason': 'Other: 42 (ok?)' }, { etag: before.etag });
  t.equal(r.status, 'done');
  t.same((await blob.getTags()).tags, { owner: 'finance', project: 'x', 'dsx-verdict': 'malicious', 'dsx-reason': 'Other: 42 _ok__' }, 'own tags kept; characters Azure refuses become _');
  t.same(await contentOf(container, 'bad file.exe'), before, 'content, MD5, creation time, ETag and Last-Modified unchanged');

  t.same(await c.tag('bad file.exe', { 'dsx-verdict': 'malicious' }), { status: 'already_done', detail: 'the blob already carries these index tags' }, 'a repeat changes nothing');
  t.equal((await c.tag('bad file.exe', { 'dsx-verdict': 'clean' })).status, 'done', 'a new verdict replaces our own tag');
  t.equal((await blob.getTags()).tags['dsx-verdict'], 'clean');
});

t.test("more than Azure's 10 index tags is an error that says so, and nothing is written", async (t) => {
  const container = await freshContainer();
  await uploadBlobs(container, { doc: 'x' });
  const blob = container.getBlobClient('doc');
  const own = Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`k${i}`, 'v']));
  await blob.setTags(own);
  const c = connector(container.containerName);
  await t.rejects(c.tag('doc', { 'dsx-verdict': 'malicious', 'dsx-reason': 'x' }), {
    name: 'ConnectorError',
    kind: 'invalid',
    message: /would carry 11 index tags; Azure allows 10 per blob: remove some of its own tags, or set tag_mode to metadata/,
  });
  t.same((await blob.getTags()).tags, own, 'tags unchanged');
});

t.test('a blob changed since the scan is not tagged with the old verdict', async (t) => {
  const container = await freshContainer();
  await uploadBlobs(container, { doc: 'v1' });
  const scanned = (await container.getBlobClient('doc').getProperties()).etag!;
  await uploadBlobs(container, { doc: 'v2' });
  for (const mode of ['index_tags', 'metadata']) {
    const r = await connector(container.containerName, mode).tag('doc', { 'dsx-verdict': 'clean' }, { etag: scanned });
    t.equal(r.status, 'skipped', mode);
    t.match(r.detail, /changed since it was scanned/);
  }
  t.same((await container.getBlobClient('doc').getTags()).tags, {});
  t.same((await container.getBlobClient('doc').getProperties()).metadata, {});
});

t.test('metadata mode merges into the blob metadata (keeping its own, and their case) with C# identifier keys', async (t) => {
  const container = await freshContainer();
  await uploadBlobs(container, { 'ünï.bin': EICAR });
  const blob = container.getBlobClient('ünï.bin');
  await blob.setMetadata({ Owner: 'finance', dsx_verdict: 'stale' });
  const before = await contentOf(container, 'ünï.bin');
  const c = connector(container.containerName, 'metadata');

  const r = await c.tag('ünï.bin', { 'dsx-verdict': 'malicious', 'dsx-reason': 'ünicode reason' }, { etag: before.etag });
  t.equal(r.status, 'done');
  t.match(r.detail, /metadata keys must be C# identifiers: dsx-verdict -> dsx_verdict, dsx-reason -> dsx_reason/, 'the mapping is stated');
  const listed = (await container.listBlobsFlat({ includeMetadata: true }).byPage().next()).value.segment.blobItems[0];
  t.same(listed.metadata, { Owner: 'finance', dsx_verdict: 'malicious', dsx_reason: encodeURIComponent('ünicode reason') }, 'own metadata kept with its case; values outside ASCII percent-encoded');
  const after = await contentOf(container, 'ünï.bin');
  t.same({ bytes: after.bytes, md5: after.md5, createdOn: after.createdOn }, { bytes: before.bytes, md5: before.md5, createdOn: before.createdOn }, 'content, MD5 and creation time unchanged (Azure gives metadata writes a new ETag)');
  t.same(await c.tag('ünï.bin', { 'dsx-verdict': 'malicious' }), { status: 'already_done', detail: 'the blob already carries this verdict metadata' });
});

t.test('tag_mode none writes nothing and says not_supported', async (t) => {
  const container = await freshContainer();
  await uploadBlobs(container, { doc: 'x' });
  t.same(await connector(container.containerName, 'none').tag('doc', { 'dsx-verdict': 'clean' }), { status: 'not_supported', detail: 'tag_mode is none: this integration writes no tags' });
  t.same((await container.getBlobClient('doc').getTags()).tags, {});
  await t.rejects(connector(container.containerName).tag('gone', { 'dsx-verdict': 'clean' }), { name: 'ConnectorError', kind: 'not_found' }, 'tagging a missing blob fails as not_found');
});
