/**
 * S3 through the whole pipeline, against a real local server (fauxqs): a full scan over many listing
 * pages finds the EICAR objects and quarantines them (copy verified, source gone), resumes from the
 * recorded continuation token after a crash, records each object's etag, and a missing bucket or a
 * store that is not there fails the scan at once with a message that says what to fix.
 */
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import t, { type Test } from 'tap';
import { integrationCreate, scopeCreate } from '../src/db/sql/catalog.ts';
import { EICAR } from '../src/testing/fixtures.ts';
import { freePort } from '../src/testing/ports.ts';
import { startLocalFauxqs, type LocalFauxqs } from '../src/testing/s3-servers.ts';
import { createTestDatabase } from './helpers/db.ts';
import { emulator, getScan, queuedJobs, Stepper, testConfig, waitFor, waitForScan, waitForScanJobsGone, workers } from './helpers/pipeline.ts';
import { jobEvents } from './helpers/wait.ts';

const BUCKET = 'scanned';

let s3: LocalFauxqs;
let seed: S3Client;
t.before(async () => {
  s3 = await startLocalFauxqs({ buckets: [BUCKET] });
  seed = s3.client();
});
t.teardown(() => s3.stop());
t.beforeEach(() => s3.server.emptyBucket(BUCKET));

async function put(key: string, body: string): Promise<void> {
  await seed.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
}

async function keys(prefix = ''): Promise<string[]> {
  const out = await seed.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
  return (out.Contents ?? []).map((o) => o.Key!).sort();
}

async function s3Scope(t: Test, settings: Record<string, unknown> = {}, policy: unknown = {}) {
  const db = await createTestDatabase(t);
  const integration = await integrationCreate(db.pool, {
    name: 'bucket',
    kind: 's3',
    settings: { bucket: BUCKET, endpoint: s3.endpoint, ...settings },
    credentials: s3.credentials,
  });
  const scope = await scopeCreate(db.pool, { integrationId: integration.id, name: 'incoming', root: 'in', include: [], exclude: [], policy, monitor: false });
  return { db, scope };
}

async function start(pool: import('pg').Pool, scopeId: number): Promise<number> {
  const { rows } = await pool.query<{ id: string }>(`select (dsx.start_full_scan($1, 'test')).full_scan_id as id`, [scopeId]);
  return Number(rows[0]!.id);
}

t.test('a full scan of a bucket prefix over many pages detects EICAR and quarantines it, verified', async (t) => {
  const names = Array.from({ length: 23 }, (_, i) => `in/dir ${i % 3}/file+${i}.txt`);
  for (const n of names) await put(n, `clean ${n}`);
  await put('in/bad one.com', EICAR);
  await put('in/deep//bad two.com', EICAR);
  await put('out/not-in-scope.com', EICAR);
  const { db, scope } = await s3Scope(t, {}, { malicious: { remediation: 'move', notify: false } });
  const emu = await emulator(t);
  const w = await workers(t, db.pool, { dsxaUrl: emu.url, config: testConfig({ pageSize: 5 }) });
  const scan = await waitForScan(db.pool, await start(db.pool, scope.id));
  t.match(scan, { status: 'completed', discovered: 25, finalized: 25, clean_count: 23, malicious_count: 2 }, 'every object of the scope, none outside it');
  t.ok(scan.pages >= 5, `listed in ${scan.pages} pages`);

  // The quarantine moves run after finalization, in their own lane: wait for the ledger to record them.
  await waitFor(async () => !(await db.pool.query(`select 1 from dsx.side_effects where status in ('pending', 'executing')`)).rowCount, 'the moves', 30_000, jobEvents(w));
  const { rows: done } = await db.pool.query<{ status: string; detail: string }>(`select status, detail from dsx.side_effects order by id`);
  t.equal(done.length, 2, 'two move decisions');
  t.same(done.map((e) => e.status), ['done', 'done'], 'both moves done');
  t.same(await keys('dsx-quarantine/'), ['dsx-quarantine/in/bad one.com', 'dsx-quarantine/in/deep//bad two.com'], 'the detections are in quarantine, keys verbatim');
  t.notOk((await keys('in/')).some((k) => k.endsWith('.com')), 'and gone from the scope');
  const copy = await seed.send(new GetObjectCommand({ Bucket: BUCKET, Key: 'dsx-quarantine/in/bad one.com' }));
  t.equal(await copy.Body!.transformToString(), EICAR, 'the quarantined copy holds the object');
  const { rows: etags } = await db.pool.query<{ n: number }>(`select count(*)::int as n from dsx.scan_results where etag is not null`);
  t.equal(etags[0]!.n, 25, 'each result records the etag of the version scanned');
  await waitForScanJobsGone(db.pool, w, scan.id); // the last jobs' rows go with graphile-worker's next completion batch
  const { rows: checks } = await db.pool.query<{ ok: boolean; check_name: string }>('select check_name, ok from dsx.verify_full_scan($1)', [scan.id]);
  t.ok(checks.every((c) => c.ok), `every invariant holds: ${JSON.stringify(checks.filter((c) => !c.ok))}`);
});

t.test('a restarted enumeration resumes from the recorded continuation token: nothing listed twice, nothing missed', async (t) => {
  for (let i = 0; i < 40; i++) await put(`in/obj-${String(i).padStart(3, '0')}`, `o${i}`);
  const { db, scope } = await s3Scope(t);
  const emu = await emulator(t);
  const config = testConfig({ pageSize: 6 });
  const id = await start(db.pool, scope.id);
  const first = new Stepper(db.pool, { dsxaUrl: emu.url, config });
  await first.drain('full-scan-scope');
  for (let i = 0; i < 3; i++) await first.drain('enumerate-scope-page');
  const mid = await getScan(db.pool, id);
  const { rows: cursor } = await db.pool.query<{ cursor: string }>('select cursor from dsx.full_scans where id = $1', [id]);
  t.ok(cursor[0]!.cursor, 'a continuation token is recorded after each page');
  t.ok(mid.discovered > 0 && mid.discovered < 40, `${mid.discovered} discovered before the "crash"`);

  // A new process (a new connector, nothing in memory) picks the queued page job up from the checkpoint.
  const second = new Stepper(db.pool, { dsxaUrl: emu.url, config });
  await second.runAll();
  const done = await getScan(db.pool, id);
  t.match(done, { status: 'completed', discovered: 40, finalized: 40 });
  const { rows } = await db.pool.query<{ n: number; d: number }>(
    'select count(*)::int as n, count(distinct object_identity)::int as d from dsx.scan_results where full_scan_id = $1',
    [id],
  );
  t.same(rows[0], { n: 40, d: 40 }, 'one result per object');
  t.same(await queuedJobs(db.pool), [], 'nothing left queued');
});

t.test('a missing bucket or an unreachable store fails the full scan at once, saying what to fix', async (t) => {
  const emu = await emulator(t);
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['a missing bucket', { bucket: 'no-such-bucket' }, /no-such-bucket.*(does not exist|not found|NoSuchBucket)/i],
    ['an endpoint nothing listens on', { endpoint: `http://127.0.0.1:${await freePort()}` }, /ECONNREFUSED|refused|could not reach/i],
    ['an endpoint host that does not resolve', { endpoint: 'http://no-such-host.invalid:9000' }, /no-such-host\.invalid/],
  ];
  for (const [what, settings, message] of cases) {
    await t.test(what, async (t) => {
      const { db, scope } = await s3Scope(t, settings);
      // A refused connection may be a restart: it is retried (here twice in all), not failed at once.
      await workers(t, db.pool, { dsxaUrl: emu.url, config: testConfig({ pageSize: 5, enumerationMaxAttempts: 2 }) });
      const t0 = Date.now();
      const scan = await waitForScan(db.pool, await start(db.pool, scope.id), 120_000);
      t.equal(scan.status, 'failed', `${what}: the scan failed`);
      t.match(scan.error, message, `with the reason: ${scan.error}`);
      t.equal(scan.discovered, 0, 'nothing half-written');
      t.comment(`${what}: failed after ${Date.now() - t0} ms`);
    });
  }
});

t.test('an event-driven head check: the etag recorded is the one of the object read', async (t) => {
  await put('in/a.txt', 'version one');
  const { db, scope } = await s3Scope(t);
  const emu = await emulator(t);
  await workers(t, db.pool, { dsxaUrl: emu.url });
  const scan = await waitForScan(db.pool, await start(db.pool, scope.id));
  t.equal(scan.status, 'completed');
  const head = await seed.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'in/a.txt' }));
  const { rows } = await db.pool.query<{ etag: string }>(`select etag from dsx.scan_results`);
  t.equal(rows[0]!.etag, head.ETag!.replaceAll('"', ''), 'the etag S3 reports for the object');
});
