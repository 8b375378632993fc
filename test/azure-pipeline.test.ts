/**
 * Azure Blob through the whole pipeline, against a real local server (azurite): a full scan of a
 * container prefix over many listing pages tags every object with its verdict (index tags merged with
 * the blob's own), quarantines the detections (copy awaited and verified, source gone), and monitoring
 * through an Azure Storage Queue scans the blob an Event Grid event names.
 */
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { QueueClient } from '@azure/storage-queue';
import t from 'tap';
import { integrationCreate, scopeCreate } from '../src/db/sql/catalog.ts';
import { blobNames, startAzurite, uploadBlobs } from '../src/testing/azurite.ts';
import { EICAR } from '../src/testing/fixtures.ts';
import { createTestDatabase } from './helpers/db.ts';
import { emulator, testConfig, waitFor, waitForScan, workers } from './helpers/pipeline.ts';
import { jobEvents } from './helpers/wait.ts';

const az = await startAzurite({ blob: true, queue: true });
t.teardown(() => az.stop());
const service = BlobServiceClient.fromConnectionString(az.connectionString);
let n = 0;

async function freshContainer(): Promise<ContainerClient> {
  const c = service.getContainerClient(`scanned-${++n}`);
  await c.create();
  return c;
}

t.test('a full scan of a container tags every object with its verdict and quarantines the detections', async (t) => {
  const container = await freshContainer();
  const blobs: Record<string, string> = {};
  for (let i = 0; i < 17; i++) blobs[`in/folder ${i % 2}/doc+${i}.txt`] = `clean ${i}`;
  blobs['in/bad.com'] = EICAR;
  blobs['other/bad.com'] = EICAR;
  await uploadBlobs(container, blobs);
  await container.getBlobClient('in/folder 0/doc+0.txt').setTags({ owner: 'finance' });

  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const integration = await integrationCreate(db.pool, {
    name: 'blobs',
    kind: 'azure_blob',
    settings: { container: container.containerName, account_url: az.blobAccountUrl! },
    credentials: { connectionString: az.connectionString },
  });
  const policy = { clean: { tag: true }, malicious: { remediation: 'move', notify: false } };
  const scope = await scopeCreate(db.pool, { integrationId: integration.id, name: 'docs', root: 'in', include: [], exclude: [], policy, monitor: false });
  const w = await workers(t, db.pool, { dsxaUrl: emu.url, config: testConfig({ pageSize: 4 }) });
  const { rows } = await db.pool.query<{ id: string }>(`select (dsx.start_full_scan($1, 'test')).full_scan_id as id`, [scope.id]);
  const scan = await waitForScan(db.pool, Number(rows[0]!.id));
  t.match(scan, { status: 'completed', discovered: 18, clean_count: 17, malicious_count: 1 });
  await waitFor(async () => !(await db.pool.query(`select 1 from dsx.side_effects where status in ('pending', 'executing')`)).rowCount, 'the remediations', 30_000, jobEvents(w));

  const { rows: effects } = await db.pool.query<{ action: string; status: string; n: number }>(
    'select action, status, count(*)::int as n from dsx.side_effects group by 1, 2 order by 1, 2',
  );
  t.same(effects, [{ action: 'move', status: 'done', n: 1 }, { action: 'tag', status: 'done', n: 17 }], 'every clean object tagged, the detection moved');
  const tags = await container.getBlobClient('in/folder 0/doc+0.txt').getTags();
  t.match(tags.tags, { owner: 'finance', 'dsx-verdict': 'clean', 'dsx-scanned-at': /^\d{4}-\d\d-\d\dT/ }, 'merged with the blob\'s own tags');
  const names = await blobNames(container);
  t.ok(names.includes('dsx-quarantine/in/bad.com'), 'the detection is in the quarantine prefix');
  t.notOk(names.includes('in/bad.com'), 'and gone from the scope');
  t.ok(names.includes('other/bad.com'), 'objects outside the scope are left alone');
});

t.test('monitoring through an Azure Storage Queue scans the blob an Event Grid event names', async (t) => {
  const container = await freshContainer();
  const queueName = `events-${n}`;
  const queue = new QueueClient(az.connectionString, queueName);
  await queue.create();
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const integration = await integrationCreate(db.pool, {
    name: 'watched',
    kind: 'azure_blob',
    settings: { container: container.containerName, account_url: az.blobAccountUrl!, event_queue_url: queue.url },
    credentials: { connectionString: az.connectionString },
  });
  await scopeCreate(db.pool, { integrationId: integration.id, name: 'inbox', root: 'drop', include: [], exclude: [], policy: {}, monitor: true });
  const w = await workers(t, db.pool, { dsxaUrl: emu.url, config: testConfig({ monitorSyncMs: 100, monitorDebounceMs: 0 }) });

  await uploadBlobs(container, { 'drop/new report.com': EICAR });
  const props = await container.getBlobClient('drop/new report.com').getProperties();
  const event = [
    {
      topic: '/subscriptions/x/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/devstoreaccount1',
      subject: `/blobServices/default/containers/${container.containerName}/blobs/drop/new report.com`,
      eventType: 'Microsoft.Storage.BlobCreated',
      id: '831e1650-001e-001b-66ab-eeb76e069631',
      data: { api: 'PutBlob', eTag: props.etag, contentLength: 68, blobType: 'BlockBlob', url: 'http://x' },
      dataVersion: '',
      metadataVersion: '1',
      eventTime: new Date().toISOString(),
    },
  ];
  // Event Grid's storage-queue destination writes each event base64-encoded.
  await queue.sendMessage(Buffer.from(JSON.stringify(event[0])).toString('base64'));
  await waitFor(async () => (await db.pool.query(`select 1 from dsx.scan_results where source_type = 'monitor' and state = 'finalized'`)).rowCount === 1, 'the scan of the event', 30_000, jobEvents(w));
  const { rows } = await db.pool.query(`select object_identity, outcome from dsx.scan_results where source_type = 'monitor'`);
  t.same(rows, [{ object_identity: 'drop/new report.com', outcome: 'malicious' }]);
  // The delete is an HTTP call to azurite after the commit, announced by nothing: polled.
  await waitFor(async () => (await queue.peekMessages()).peekedMessageItems.length === 0, 'the message deleted');
});
