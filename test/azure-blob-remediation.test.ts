import {
  AccountSASPermissions,
  AccountSASResourceTypes,
  AccountSASServices,
  BlobServiceClient,
  generateAccountSASQueryParameters,
  StorageSharedKeyCredential,
  type ContainerClient,
} from '@azure/storage-blob';
import t from 'tap';
import { AzureBlobConnector } from '../src/connectors/azure-blob/connector.ts';
import { QUARANTINE_META } from '../src/connectors/azure-blob/remediation.ts';
import { RequestLimiter } from '../src/connectors/rate-limit.ts';
import { startFaultProxy } from '../src/testing/fault-proxy.ts';
import { AZURITE_ACCOUNT, AZURITE_KEY, blobNames, readAll, startAzurite, uploadBlobs } from '../src/testing/azurite.ts';
import { EICAR } from '../src/testing/fixtures.ts';

const az = await startAzurite({ blob: true });
t.teardown(() => az.stop());
const service = BlobServiceClient.fromConnectionString(az.connectionString);
const sharedKey = new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY);
let n = 0;

async function freshContainer(kind = 'data'): Promise<ContainerClient> {
  const c = service.getContainerClient(`${kind}-${++n}`);
  await c.create();
  return c;
}

/** A SAS token of the emulator's account with the given permissions (e.g. "rl", "rwdlac"). */
function accountSas(permissions: string): string {
  return generateAccountSASQueryParameters(
    {
      permissions: AccountSASPermissions.parse(permissions),
      resourceTypes: AccountSASResourceTypes.parse('sco').toString(),
      services: AccountSASServices.parse('b').toString(),
      expiresOn: new Date(Date.now() + 3_600_000),
    },
    sharedKey,
  ).toString();
}

const CREDENTIALS = {
  'an account key': () => ({ settings: { account_url: az.blobAccountUrl }, credentials: { accountName: AZURITE_ACCOUNT, accountKey: AZURITE_KEY } }),
  'a connection string': () => ({ settings: {}, credentials: { connectionString: az.connectionString } }),
  'a SAS token': () => ({ settings: { account_url: az.blobAccountUrl }, credentials: { sasToken: `?${accountSas('rwdlac')}` } }),
};

function connector(settings: Record<string, unknown>, credentials: unknown = { accountName: AZURITE_ACCOUNT, accountKey: AZURITE_KEY }, accountUrl = az.blobAccountUrl): AzureBlobConnector {
  return new AzureBlobConnector({ settings: { account_url: accountUrl, ...settings }, credentials, limiter: new RequestLimiter() });
}

async function text(container: ContainerClient, name: string): Promise<string> {
  return (await readAll((await container.getBlobClient(name).download()).readableStreamBody!)).toString('latin1');
}

for (const [how, make] of Object.entries(CREDENTIALS)) {
  t.test(`quarantine to a separate container with ${how}: the copy is awaited and verified before the source is deleted`, async (t) => {
    const data = await freshContainer();
    const quarantine = await freshContainer('quarantine');
    await uploadBlobs(data, { 'in/eicar file+1.com': EICAR });
    await data.getBlobClient('in/eicar file+1.com').setMetadata({ owner: 'finance' });
    const source = await data.getBlobClient('in/eicar file+1.com').getProperties();
    const { settings, credentials } = make();
    const c = connector({ ...settings, container: data.containerName, quarantine_container: quarantine.containerName }, credentials, (settings as { account_url?: string }).account_url);

    const r = await c.quarantine('in/eicar file+1.com', { etag: source.etag, key: 'decision-1' });
    t.same(r, { status: 'done', detail: `moved to ${quarantine.containerName}/in/eicar file+1.com` });
    t.same(await blobNames(data), [], 'the source is gone');
    t.same(await blobNames(quarantine), ['in/eicar file+1.com'], 'one copy');
    t.equal(await text(quarantine, 'in/eicar file+1.com'), EICAR, 'the evidence is intact');
    const copy = await quarantine.getBlobClient('in/eicar file+1.com').getProperties();
    t.equal(copy.copyStatus, 'success');
    t.same(copy.contentMD5, source.contentMD5, 'same Content-MD5');
    t.equal(copy.metadata?.[QUARANTINE_META.key], 'decision-1', 'the decision key is on the copy');
    t.equal(copy.metadata?.[QUARANTINE_META.sourceEtag], source.etag);
    t.equal(decodeURIComponent(copy.metadata![QUARANTINE_META.source]!), `${data.containerName}/in/eicar file+1.com`);
    t.equal(copy.metadata?.owner, 'finance', "the blob's own metadata travels with it");

    const again = await c.quarantine('in/eicar file+1.com', { etag: source.etag, key: 'decision-1' });
    t.same(again, { status: 'already_done', detail: `already in quarantine at ${quarantine.containerName}/in/eicar file+1.com` }, 'a retry with the same key');
    t.same(await blobNames(quarantine), ['in/eicar file+1.com'], 'no second copy');
  });
}

t.test('quarantine to a prefix of the same container; the quarantined blob is internal from then on', async (t) => {
  const data = await freshContainer();
  await uploadBlobs(data, { 'a/bad.exe': EICAR, 'a/good.txt': 'fine' });
  const c = connector({ container: data.containerName });
  const r = await c.quarantine('a/bad.exe', { key: 'k' });
  t.same(r, { status: 'done', detail: `moved to ${data.containerName}/dsx-quarantine/a/bad.exe` });
  t.same(await blobNames(data), ['a/good.txt', 'dsx-quarantine/a/bad.exe']);
  const page = await c.listPage('', null, 10);
  t.same(page.objects.map((o) => o.identity), ['a/good.txt'], 'the quarantine is never enumerated');
  t.same(page.skipped, [{ identity: 'dsx-quarantine/a/bad.exe', reason: 'internal', detail: 'quarantine or probe blob of this integration' }]);
  t.equal(c.identityOfBlob('dsx-quarantine/a/bad.exe'), null, 'events about it are ignored');
  t.same(await c.quarantine('dsx-quarantine/a/bad.exe'), { status: 'already_done', detail: 'the blob is inside the quarantine location' }, 'never quarantined twice over');

  const custom = connector({ container: data.containerName, prefix: 'a', quarantine_prefix: 'evidence' });
  await uploadBlobs(data, { 'a/bad2.exe': EICAR });
  t.same(await custom.quarantine('bad2.exe'), { status: 'done', detail: `moved to ${data.containerName}/evidence/bad2.exe` }, 'quarantine_prefix is a prefix of the container');
});

t.test('a quarantine name taken by other evidence keeps both: the new copy gets a suffix from the key', async (t) => {
  const data = await freshContainer();
  const quarantine = await freshContainer('quarantine');
  await uploadBlobs(quarantine, { 'report.pdf': 'earlier evidence' });
  await uploadBlobs(data, { 'report.pdf': EICAR });
  const c = connector({ container: data.containerName, quarantine_container: quarantine.containerName });
  const r = await c.quarantine('report.pdf', { key: 'decision-7' });
  t.equal(r.status, 'done');
  const names = await blobNames(quarantine);
  t.equal(names.length, 2, 'both kept');
  const suffixed = names.find((x) => x !== 'report.pdf')!;
  t.match(suffixed, /^report\.pdf\.dsx-[0-9a-f]{8}$/);
  t.equal(r.detail, `moved to ${quarantine.containerName}/${suffixed}`, 'the detail names the final destination');
  t.equal(await text(quarantine, 'report.pdf'), 'earlier evidence', 'never overwritten');
  t.equal(await text(quarantine, suffixed), EICAR);
  t.same(await c.quarantine('report.pdf', { key: 'decision-7' }), { status: 'already_done', detail: `already in quarantine at ${quarantine.containerName}/${suffixed}` }, 'the retry finds the suffixed copy');
});

t.test('a crash between the verified copy and the source delete: the retry finishes the move with the same copy', async (t) => {
  const data = await freshContainer();
  const quarantine = await freshContainer('quarantine');
  await uploadBlobs(data, { 'x.bin': EICAR });
  const etag = (await data.getBlobClient('x.bin').getProperties()).etag;
  // The source's DELETE fails (a 500 from the proxy, as if the process died before it): nothing else does.
  const proxy = await startFaultProxy({
    target: az.blobAccountUrl!.replace(/\/devstoreaccount1$/, ''),
    fault: (req) => (req.method === 'DELETE' ? { status: 500, body: 'injected' } : null),
  });
  t.teardown(() => proxy.close());
  const crashing = connector({ container: data.containerName, quarantine_container: quarantine.containerName }, undefined, `${proxy.url}/${AZURITE_ACCOUNT}`);
  await t.rejects(crashing.quarantine('x.bin', { etag, key: 'decision-9' }), { name: 'ConnectorError', kind: 'transient' }, 'a failed step throws, never reports success');
  t.same(await blobNames(data), ['x.bin'], 'the source is kept');
  t.same(await blobNames(quarantine), ['x.bin'], 'the verified copy exists');

  const retry = connector({ container: data.containerName, quarantine_container: quarantine.containerName });
  t.same(await retry.quarantine('x.bin', { etag, key: 'decision-9' }), { status: 'done', detail: `moved to ${quarantine.containerName}/x.bin` });
  t.same(await blobNames(quarantine), ['x.bin'], 'its own copy was recognized: no second copy');
  t.same(await blobNames(data), []);
});

t.test('quarantine and delete leave a blob overwritten since the scan alone', async (t) => {
  const data = await freshContainer();
  const quarantine = await freshContainer('quarantine');
  await uploadBlobs(data, { doc: 'scanned: malicious' });
  const scanned = (await data.getBlobClient('doc').getProperties()).etag!;
  await uploadBlobs(data, { doc: 'newer upload' });
  const c = connector({ container: data.containerName, quarantine_container: quarantine.containerName });

  const q = await c.quarantine('doc', { etag: scanned, key: 'k1' });
  t.equal(q.status, 'skipped');
  t.match(q.detail, /changed since it was scanned/);
  t.same(await blobNames(quarantine), [], 'nothing copied');

  const d = await c.remove('doc', { etag: scanned });
  t.equal(d.status, 'skipped');
  t.match(d.detail, /newer upload was kept/);
  t.equal(await text(data, 'doc'), 'newer upload', 'the newer upload is intact');

  const current = (await data.getBlobClient('doc').getProperties()).etag!;
  t.same(await c.remove('doc', { etag: current }), { status: 'done', detail: 'deleted' }, 'the scanned version is deleted');
  t.same(await c.remove('doc', { etag: current }), { status: 'already_done', detail: 'blob does not exist' }, 'and a repeat is already done');
  await t.rejects(c.quarantine('doc', { key: 'nothing' }), { name: 'ConnectorError', kind: 'not_found' }, 'quarantining a blob that is gone and was never quarantined');
});

t.test('a read-only SAS cannot quarantine: a permission error, and nothing half-written', async (t) => {
  const data = await freshContainer();
  const quarantine = await freshContainer('quarantine');
  await uploadBlobs(data, { 'bad.exe': EICAR });
  const c = connector({ container: data.containerName, quarantine_container: quarantine.containerName }, { sasToken: accountSas('rl') });
  await t.rejects(c.quarantine('bad.exe', { key: 'k' }), { name: 'ConnectorError', kind: 'permission', message: /lack write \(create\) on the quarantine location.*AuthorizationPermissionMismatch/ });
  await t.rejects(c.remove('bad.exe'), { name: 'ConnectorError', kind: 'permission' });
  t.same(await blobNames(data), ['bad.exe'], 'the source is intact');
  t.same(await blobNames(quarantine), [], 'no partial copy');
});
