/**
 * A store that throttles is asking for time, not failing objects: a scan job whose reads are still
 * throttled after the connector's own backoff waits and tries again without using an attempt, so even
 * with one attempt per object nothing ends fetch_failed. Azure (azurite) behind a real HTTP proxy that
 * answers 503 ServerBusy to every blob read while throttling is on.
 */
import { BlobServiceClient } from '@azure/storage-blob';
import t from 'tap';
import { integrationCreate, scopeCreate } from '../src/db/sql/catalog.ts';
import { startAzurite, uploadBlobs } from '../src/testing/azurite.ts';
import { startFaultProxy } from '../src/testing/fault-proxy.ts';
import { createTestDatabase } from './helpers/db.ts';
import { emulator, queuedJobs, testConfig, waitFor, waitForScan, workers } from './helpers/pipeline.ts';

const SERVER_BUSY = {
  status: 503,
  headers: { 'content-type': 'application/xml', 'x-ms-error-code': 'ServerBusy' },
  body: '<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code><Message>The server is busy.</Message></Error>',
};

t.test('reads throttled for longer than the connector backs off: objects wait without using attempts, then scan clean', async (t) => {
  const az = await startAzurite({ blob: true });
  t.teardown(() => az.stop());
  const container = BlobServiceClient.fromConnectionString(az.connectionString).getContainerClient('busy');
  await container.create();
  await uploadBlobs(container, { 'a.txt': 'alpha', 'b.txt': 'beta', 'c.txt': 'gamma' });

  let throttling = true;
  // Blob reads only (a GET without a query: listing has ?comp=list): enumeration goes through.
  const proxy = await startFaultProxy({
    target: az.blobAccountUrl!.replace(/\/devstoreaccount1$/, ''),
    fault: (req) => (throttling && req.method === 'GET' && !req.url!.includes('?') ? SERVER_BUSY : null),
  });
  t.teardown(() => proxy.close());

  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const integration = await integrationCreate(db.pool, {
    name: 'busy',
    kind: 'azure_blob',
    settings: { container: 'busy', account_url: `${proxy.url}/devstoreaccount1` },
    credentials: { connectionString: az.connectionString.replace(az.blobAccountUrl!, `${proxy.url}/devstoreaccount1`) },
  });
  const scope = await scopeCreate(db.pool, { integrationId: integration.id, name: 'busy', root: '', include: [], exclude: [], policy: {}, monitor: false });
  // One attempt per object: without the wait, the first throttled read would end it fetch_failed.
  await workers(t, db.pool, { dsxaUrl: emu.url, config: testConfig({ scanMaxAttempts: 1 }) });
  const { rows } = await db.pool.query<{ id: string }>(`select (dsx.start_full_scan($1, 'test')).full_scan_id as id`, [scope.id]);
  const id = Number(rows[0]!.id);

  // Every object has waited at least once: its job is back in the queue, marked, with its attempts whole.
  await waitFor(async () => {
    const jobs = await queuedJobs(db.pool, 'scan-object');
    return jobs.length === 3 && jobs.every((j) => ((j.payload as { body: { throttle_deferrals?: number } }).body.throttle_deferrals ?? 0) >= 1 && j.attempts === 0);
  }, 'every scan job to wait for the throttling store', 60_000);
  const { rows: none } = await db.pool.query(`select count(*)::int as n from dsx.scan_results where state = 'finalized'`);
  t.equal(none[0].n, 0, 'no object was finalized while the store throttled');
  t.ok(proxy.stats.faulted >= 3 * 6, `the connector backed off first (${proxy.stats.faulted} throttled reads)`);

  throttling = false;
  const scan = await waitForScan(db.pool, id, 60_000);
  t.match(scan, { status: 'completed', discovered: 3, clean_count: 3, fetch_failed_count: 0 });
});
