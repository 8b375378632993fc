/**
 * Verdict tags against a real s3rver (the only local server with working object tagging; fauxqs
 * replaces an object's body on `PUT ?tagging`, so it is never tagged).
 */
import { GetObjectTaggingCommand, PutObjectCommand, PutObjectTaggingCommand, type S3Client } from '@aws-sdk/client-s3';
import t, { type Test } from 'tap';
import { RequestLimiter } from '../src/connectors/rate-limit.ts';
import { S3Connector } from '../src/connectors/s3/connector.ts';
import { startFaultProxy } from '../src/testing/fault-proxy.ts';
import { startLocalS3rver, type LocalS3 } from '../src/testing/s3-servers.ts';

const BUCKET = 'tag-bucket';

let s3: LocalS3;
let seed: S3Client;
t.before(async () => {
  s3 = await startLocalS3rver({ buckets: [BUCKET] });
  seed = s3.client();
});
t.teardown(() => s3.stop());

function connector(t: Test, settings: Record<string, unknown> = {}, endpoint = s3.endpoint): S3Connector {
  const c = new S3Connector({ settings: { bucket: BUCKET, endpoint, ...settings }, credentials: s3.credentials, limiter: new RequestLimiter() });
  t.teardown(() => c.close());
  return c;
}

async function put(key: string, body: string, tags: Record<string, string> = {}): Promise<string> {
  const out = await seed.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
  if (Object.keys(tags).length > 0) {
    await seed.send(new PutObjectTaggingCommand({ Bucket: BUCKET, Key: key, Tagging: { TagSet: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })) } }));
  }
  return out.ETag!.replaceAll('"', '');
}

async function tagsOf(key: string): Promise<Record<string, string>> {
  const out = await seed.send(new GetObjectTaggingCommand({ Bucket: BUCKET, Key: key }));
  return Object.fromEntries((out.TagSet ?? []).map((x) => [x.Key!, x.Value!]));
}

const VERDICT = { 'dsx-verdict': 'clean', 'dsx-scanned-at': '2026-12-01T08:00:00.000Z' };

t.test('verdict tags are merged into the object\'s own tags, which are all kept', async (t) => {
  const etag = await put('docs/a.txt', 'a', { project: 'apollo', 'cost-center': '42' });
  const c = connector(t);
  t.same(await c.tag('docs/a.txt', VERDICT, { etag }), { status: 'done', detail: 'tagged dsx-verdict, dsx-scanned-at' });
  t.same(await tagsOf('docs/a.txt'), { project: 'apollo', 'cost-center': '42', ...VERDICT });

  t.match(await c.tag('docs/a.txt', VERDICT, { etag }), { status: 'already_done' }, 'the same tags again change nothing');
  const rescan = { 'dsx-verdict': 'malicious', 'dsx-scanned-at': '2026-12-02T09:00:00.000Z' };
  t.match(await c.tag('docs/a.txt', rescan, { etag }), { status: 'done' });
  t.same(await tagsOf('docs/a.txt'), { project: 'apollo', 'cost-center': '42', ...rescan }, 'our keys are replaced, the others kept');
});

t.test('an object that changed since the scan is not tagged: a verdict never lands on an unscanned upload', async (t) => {
  const scanned = await put('docs/b.txt', 'scanned');
  await put('docs/b.txt', 'replaced after the scan');
  const r = await connector(t).tag('docs/b.txt', VERDICT, { etag: scanned });
  t.equal(r.status, 'skipped');
  t.same(await tagsOf('docs/b.txt'), {});
});

t.test('more than 10 tags in all is an error that says so, and the object keeps its tags', async (t) => {
  const own = Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`k${i}`, `v${i}`]));
  await put('docs/c.txt', 'c', own);
  await t.rejects(connector(t).tag('docs/c.txt', VERDICT), {
    kind: 'invalid',
    message: /has 9 tags of its own .* S3 allows at most 10 per object: adding 2 verdict tags would exceed it; free some, or set tag_mode none/,
  });
  t.same(await tagsOf('docs/c.txt'), own);
});

t.test('tag_mode none, and a store answering 501 to tagging, make tags not_supported instead of failing', async (t) => {
  await put('docs/d.txt', 'd');
  t.same(await connector(t, { tag_mode: 'none' }).tag('docs/d.txt', VERDICT), { status: 'not_supported', detail: 'tag_mode is none for this integration' });
  const proxy = await startFaultProxy({
    target: s3.endpoint,
    fault: (req) =>
      new URL(req.url!, 'http://x').searchParams.has('tagging')
        ? { status: 501, headers: { 'content-type': 'application/xml' }, body: '<Error><Code>NotImplemented</Code><Message>no tagging here</Message></Error>' }
        : null,
  });
  t.teardown(() => proxy.close());
  const r = await connector(t, {}, proxy.url).tag('docs/d.txt', VERDICT);
  t.equal(r.status, 'not_supported');
  t.match(r.detail, /does not implement object tagging/);
});

t.test('tagging a missing object is not_found; a tag S3 would refuse is invalid before any request', async (t) => {
  const c = connector(t);
  await t.rejects(c.tag('docs/none.txt', VERDICT), { kind: 'not_found', message: /GetObjectTagging s3:\/\/tag-bucket\/docs\/none\.txt: the object does not exist/ });
  await t.rejects(c.tag('docs/none.txt', { 'bad<key>': 'x' }), { kind: 'invalid', message: /not a valid S3 tag key/ });
});
