/**
 * S3 delete and quarantine against a real fauxqs server (and the fault proxy in front of it for
 * failures). No local S3 server keeps object versions (fauxqs accepts versioning calls and ignores
 * them; s3rver has none), so "never delete or move a newer version" is covered here by the ETag guard,
 * which is what applies on unversioned buckets; the version-id path is one `VersionId` parameter on
 * the same requests.
 */
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import t, { type Test } from 'tap';
import { RequestLimiter } from '../src/connectors/rate-limit.ts';
import { S3Connector, type S3ConnectorOptions } from '../src/connectors/s3/connector.ts';
import { startFaultProxy } from '../src/testing/fault-proxy.ts';
import { startLocalFauxqs, type LocalFauxqs } from '../src/testing/s3-servers.ts';

const BUCKET = 'work-bucket';
const VAULT = 'vault-bucket';

let s3: LocalFauxqs;
let seed: S3Client;
t.before(async () => {
  s3 = await startLocalFauxqs({ buckets: [BUCKET, VAULT] });
  seed = s3.client();
});
t.teardown(() => s3.stop());
t.beforeEach(() => {
  s3.server.emptyBucket(BUCKET);
  s3.server.emptyBucket(VAULT);
});

function connector(t: Test, settings: Record<string, unknown> = {}, extra: Partial<S3ConnectorOptions> = {}, endpoint = s3.endpoint): S3Connector {
  const c = new S3Connector({
    settings: { bucket: BUCKET, endpoint, ...settings },
    credentials: s3.credentials,
    limiter: new RequestLimiter({ maxInFlight: 4 }),
    ...extra,
  });
  t.teardown(() => c.close());
  return c;
}

async function put(key: string, body: string | Buffer, bucket = BUCKET): Promise<string> {
  const out = await seed.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, Metadata: { owner: 'finance' } }));
  return out.ETag!.replaceAll('"', '');
}

async function body(key: string, bucket = BUCKET): Promise<Buffer | null> {
  try {
    const out = await seed.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return Buffer.from(await out.Body!.transformToByteArray());
  } catch (err) {
    if ((err as { name?: string }).name === 'NoSuchKey') return null;
    throw err;
  }
}

async function keys(bucket: string, prefix = ''): Promise<string[]> {
  const out = await seed.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
  return (out.Contents ?? []).map((o) => o.Key!);
}

async function metadata(key: string, bucket: string): Promise<Record<string, string>> {
  return (await seed.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))).Metadata ?? {};
}

t.test('delete removes the object, and a second delete is already_done', async (t) => {
  const etag = await put('doomed.exe', 'bad');
  const c = connector(t);
  t.match(await c.remove('doomed.exe', { etag }), { status: 'done' });
  t.equal(await body('doomed.exe'), null);
  t.match(await c.remove('doomed.exe', { etag }), { status: 'already_done' });
});

t.test('delete of an object that changed since the scan is skipped and leaves the newer object', async (t) => {
  const scanned = await put('report.pdf', 'infected version');
  await put('report.pdf', 'clean rewrite by its owner');
  const r = await connector(t).remove('report.pdf', { etag: scanned });
  t.equal(r.status, 'skipped');
  t.match(r.detail, /changed since it was scanned/);
  t.equal((await body('report.pdf'))?.toString(), 'clean rewrite by its owner');
});

t.test('quarantine to the default prefix copies, verifies, then deletes the source; a retry is already_done', async (t) => {
  const etag = await put('inbox/bad file+1.exe', 'malware bytes');
  const c = connector(t);
  const r = await c.quarantine('inbox/bad file+1.exe', { etag, key: 'decision:42' });
  t.same(r, { status: 'done', detail: 'moved to s3://work-bucket/dsx-quarantine/inbox/bad file+1.exe' });
  t.equal(await body('inbox/bad file+1.exe'), null, 'source gone');
  t.equal((await body('dsx-quarantine/inbox/bad file+1.exe'))?.toString(), 'malware bytes', 'copy intact');
  t.match(await metadata('dsx-quarantine/inbox/bad file+1.exe', BUCKET), {
    'dsx-quarantine-key': encodeURIComponent('decision:42'),
    'dsx-source-bucket': BUCKET,
    'dsx-source-key': encodeURIComponent('inbox/bad file+1.exe'),
    'dsx-source-etag': etag,
    owner: 'finance',
  });
  const again = await c.quarantine('inbox/bad file+1.exe', { etag, key: 'decision:42' });
  t.same(again, { status: 'already_done', detail: 'already in quarantine at s3://work-bucket/dsx-quarantine/inbox/bad file+1.exe' });
  t.same(await keys(BUCKET), ['dsx-quarantine/inbox/bad file+1.exe'], 'one copy, nothing else');
  t.same((await c.listPage('', null, 10)).objects, [], 'the quarantine area is never enumerated');
});

t.test('quarantine to a separate bucket keeps the key, and to a custom prefix puts it under that prefix', async (t) => {
  const e1 = await put('a/one.bin', 'one');
  const vault = connector(t, { quarantine_bucket: VAULT });
  t.match(await vault.quarantine('a/one.bin', { etag: e1, key: 'k1' }), { status: 'done', detail: 'moved to s3://vault-bucket/a/one.bin' });
  t.equal((await body('a/one.bin', VAULT))?.toString(), 'one');
  t.equal(await body('a/one.bin'), null);

  const e2 = await put('data/two.bin', 'two');
  const custom = connector(t, { prefix: 'data/', quarantine_prefix: 'evidence' });
  t.match(await custom.quarantine('two.bin', { etag: e2, key: 'k2' }), { status: 'done', detail: 'moved to s3://work-bucket/evidence/data/two.bin' });
  t.equal((await body('evidence/data/two.bin'))?.toString(), 'two');
});

t.test('a quarantine name taken by another object is never overwritten: both are kept, and a retry finds its own copy', async (t) => {
  await put('dsx-quarantine/x.doc', 'earlier evidence');
  const etag = await put('x.doc', 'new malware');
  const c = connector(t);
  const r = await c.quarantine('x.doc', { etag, key: 'decision:7' });
  t.equal(r.status, 'done');
  const dest = /moved to s3:\/\/work-bucket\/(.*)$/.exec(r.detail!)![1]!;
  t.match(dest, /^dsx-quarantine\/x\.doc\.dsx-[0-9a-f]{16}$/);
  t.equal((await body('dsx-quarantine/x.doc'))?.toString(), 'earlier evidence');
  t.equal((await body(dest))?.toString(), 'new malware');
  t.same(await c.quarantine('x.doc', { etag, key: 'decision:7' }), { status: 'already_done', detail: `already in quarantine at s3://work-bucket/${dest}` });
  t.equal((await keys(BUCKET)).length, 2);
});

t.test('a retry after a crash between the copy and the delete recognizes its copy: already_done, no second copy', async (t) => {
  const etag = await put('crash.bin', 'payload');
  let crash = true;
  const c = connector(t, {}, {
    quarantineHooks: {
      afterCopy() {
        if (crash) throw new Error('simulated crash after the copy');
      },
    },
  });
  await t.rejects(c.quarantine('crash.bin', { etag, key: 'decision:9' }), { message: 'simulated crash after the copy' });
  t.equal((await body('crash.bin'))?.toString(), 'payload', 'the source is still there');
  crash = false;
  const r = await c.quarantine('crash.bin', { etag, key: 'decision:9' });
  t.equal(r.status, 'already_done');
  t.match(r.detail, /an earlier attempt's copy\); source deleted/);
  t.same(await keys(BUCKET), ['dsx-quarantine/crash.bin']);
});

t.test('quarantine of an object that changed since the scan is skipped and copies nothing', async (t) => {
  const scanned = await put('moving.txt', 'v1');
  await put('moving.txt', 'v2');
  const r = await connector(t).quarantine('moving.txt', { etag: scanned, key: 'd' });
  t.equal(r.status, 'skipped');
  t.same(await keys(BUCKET), ['moving.txt']);
});

t.test('quarantine of an object that is gone and was never copied is not_found', async (t) => {
  await t.rejects(connector(t).quarantine('never.txt', { key: 'd' }), { kind: 'not_found', message: /no quarantine copy of this decision/ });
});

t.test('an object over the multipart threshold is copied in parts and verified by length', async (t) => {
  const big = Buffer.alloc(11 * 1024 * 1024);
  for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff;
  const etag = await put('big.iso', big);
  const c = connector(t, { quarantine_bucket: VAULT }, { multipartThreshold: 1024 * 1024, partSize: 5 * 1024 * 1024 });
  t.match(await c.quarantine('big.iso', { etag, key: 'mp' }), { status: 'done', detail: 'moved to s3://vault-bucket/big.iso' });
  const head = await seed.send(new HeadObjectCommand({ Bucket: VAULT, Key: 'big.iso' }));
  t.match(head.ETag, /-3"$/, 'three parts: 5 + 5 + 1 MiB');
  t.ok((await body('big.iso', VAULT))!.equals(big), 'the copy is byte for byte the source');
  t.equal(await body('big.iso'), null);
});

t.test('a failed part aborts the multipart copy: no partial copy is left and the source stays', async (t) => {
  const big = Buffer.alloc(11 * 1024 * 1024, 1);
  const etag = await put('part-fail.iso', big);
  let partCopies = 0;
  let aborts = 0;
  const proxy = await startFaultProxy({
    target: s3.endpoint,
    fault: (req) => {
      const url = new URL(req.url!, 'http://x');
      if (req.method === 'PUT' && url.searchParams.has('uploadId') && req.headers['x-amz-copy-source'] && ++partCopies === 2) {
        return { status: 500, headers: { 'content-type': 'application/xml' }, body: '<Error><Code>InternalError</Code><Message>disk on fire</Message></Error>' };
      }
      if (req.method === 'DELETE' && url.searchParams.has('uploadId')) aborts++;
      return null;
    },
  });
  t.teardown(() => proxy.close());
  const c = connector(t, { quarantine_bucket: VAULT }, { multipartThreshold: 1024 * 1024, partSize: 5 * 1024 * 1024 }, proxy.url);
  await t.rejects(c.quarantine('part-fail.iso', { etag, key: 'mp' }), { kind: 'transient', message: /multipart copy \(UploadPartCopy\) s3:\/\/vault-bucket\/part-fail\.iso: the store failed \(500 InternalError/ });
  t.equal(aborts, 1, 'the upload was aborted');
  t.same(await keys(VAULT), [], 'no copy in the quarantine bucket');
  t.ok((await body('part-fail.iso'))!.equals(big), 'the source is untouched');
});

t.test('a quarantine bucket that does not exist is a configuration error and nothing is written or deleted', async (t) => {
  const etag = await put('keep-me.txt', 'evidence');
  const c = connector(t, { quarantine_bucket: 'missing-vault' });
  await t.rejects(c.quarantine('keep-me.txt', { etag, key: 'd' }), { kind: 'configuration', message: /bucket missing-vault does not exist/ });
  t.equal((await body('keep-me.txt'))?.toString(), 'evidence');
});
