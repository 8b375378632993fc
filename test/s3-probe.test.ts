/**
 * `probe` against real servers: every capability on s3rver (it has tagging), tag_mode none on fauxqs
 * (never tagged), and a quarantine location that does not exist; no object but the probe's own changes.
 */
import { GetObjectTaggingCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import t, { type Test } from 'tap';
import { RequestLimiter } from '../src/connectors/rate-limit.ts';
import { S3Connector } from '../src/connectors/s3/connector.ts';
import type { ProbeResult } from '../src/connectors/types.ts';
import { startLocalFauxqs, startLocalS3rver, type LocalFauxqs, type LocalS3 } from '../src/testing/s3-servers.ts';

let fq: LocalFauxqs;
let rver: LocalS3;
t.before(async () => {
  [fq, rver] = await Promise.all([startLocalFauxqs({ buckets: ['fq-bucket'] }), startLocalS3rver({ buckets: ['rv-bucket'] })]);
  await fq.client().send(new PutObjectCommand({ Bucket: 'fq-bucket', Key: 'scope/a.txt', Body: 'a' }));
  await rver.client().send(new PutObjectCommand({ Bucket: 'rv-bucket', Key: 'scope/a.txt', Body: 'a' }));
});
t.teardown(async () => {
  await Promise.all([fq.stop(), rver.stop()]);
});

function connector(t: Test, server: LocalS3, settings: Record<string, unknown>): S3Connector {
  const c = new S3Connector({ settings: { endpoint: server.endpoint, ...settings }, credentials: server.credentials, limiter: new RequestLimiter() });
  t.teardown(() => c.close());
  return c;
}

async function snapshot(client: S3Client, bucket: string): Promise<string[]> {
  const out = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
  return (out.Contents ?? []).map((o) => `${o.Key} ${o.ETag} ${o.Size}`);
}

const byCapability = (results: ProbeResult[]) => Object.fromEntries(results.map((r) => [r.capability, r]));

t.test('on a store with every capability each probe is ok, and only the probe objects came and went', async (t) => {
  const client = rver.client();
  const before = await snapshot(client, 'rv-bucket');
  const results = await connector(t, rver, { bucket: 'rv-bucket' }).probe('scope');
  t.same(results.map((r) => r.capability), ['list', 'read', 'tag', 'quarantine', 'delete']);
  for (const r of results) t.ok(r.ok, `${r.capability}: ${r.detail}`);
  t.match(byCapability(results).read!.detail, 'read the first byte of s3://rv-bucket/scope/a.txt');
  t.same(await snapshot(client, 'rv-bucket'), before, 'no object changed, no probe object left');
  t.same((await client.send(new GetObjectTaggingCommand({ Bucket: 'rv-bucket', Key: 'scope/a.txt' }))).TagSet, [], 'the scope object was not tagged');
});

t.test('with tag_mode none the tag probe says why instead of tagging, and the rest are ok', async (t) => {
  const client = fq.client();
  const before = await snapshot(client, 'fq-bucket');
  const r = byCapability(await connector(t, fq, { bucket: 'fq-bucket', tag_mode: 'none' }).probe('scope'));
  t.same(r.tag, { capability: 'tag', ok: false, detail: 'tag_mode is none: tag actions are recorded as not_supported' });
  for (const cap of ['list', 'read', 'quarantine', 'delete']) t.ok(r[cap]!.ok, `${cap}: ${r[cap]!.detail}`);
  t.same(await snapshot(client, 'fq-bucket'), before);
});

t.test('a quarantine bucket that does not exist fails the quarantine probe with the reason; list and read still pass', async (t) => {
  const r = byCapability(await connector(t, fq, { bucket: 'fq-bucket', tag_mode: 'none', quarantine_bucket: 'no-vault' }).probe('scope'));
  t.ok(r.list!.ok);
  t.ok(r.read!.ok);
  t.equal(r.quarantine!.ok, false);
  t.match(r.quarantine!.detail, /PutObject s3:\/\/no-vault\/\.dsx-probe\/[0-9a-f-]+: bucket no-vault does not exist/);
  t.same(r.delete, { capability: 'delete', ok: false, detail: 'no probe object could be written to delete' });
});
