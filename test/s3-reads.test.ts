/**
 * S3 reads against a real fauxqs server: streamed GetObject with its length, ETag and time; EICAR
 * intact; missing objects and buckets; the limiter slot held until the body is done.
 */
import { createHash } from 'node:crypto';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import t, { type Test } from 'tap';
import { EICAR_TEST_STRING } from '../src/connectors/eicar.ts';
import { RequestLimiter } from '../src/connectors/rate-limit.ts';
import { S3Connector } from '../src/connectors/s3/connector.ts';
import type { OpenedObject } from '../src/connectors/types.ts';
import { startLocalFauxqs, type LocalFauxqs } from '../src/testing/s3-servers.ts';

const BUCKET = 'read-bucket';

let s3: LocalFauxqs;
t.before(async () => {
  s3 = await startLocalFauxqs({ buckets: [BUCKET] });
});
t.teardown(() => s3.stop());

function connector(t: Test, settings: Record<string, unknown> = {}, limiter = new RequestLimiter({ maxInFlight: 4 })): S3Connector {
  const c = new S3Connector({ settings: { bucket: BUCKET, endpoint: s3.endpoint, ...settings }, credentials: s3.credentials, limiter });
  t.teardown(() => c.close());
  return c;
}

async function readAll(opened: OpenedObject): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of opened.stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

t.test('an EICAR test file is read back intact with its length, ETag and modification time', async (t) => {
  await s3.client().send(new PutObjectCommand({ Bucket: BUCKET, Key: 'in/eicar.com', Body: EICAR_TEST_STRING }));
  const c = connector(t);
  const opened = await c.open('in/eicar.com');
  t.equal(opened.size, EICAR_TEST_STRING.length);
  t.equal(opened.etag, createHash('md5').update(EICAR_TEST_STRING).digest('hex'));
  t.equal(opened.versionId, null, 'fauxqs keeps no versions: no version id');
  t.ok(!Number.isNaN(Date.parse(opened.mtime!)));
  t.equal((await readAll(opened)).toString('latin1'), EICAR_TEST_STRING);

  const info = await c.stat('in/eicar.com');
  t.match(info, { identity: 'in/eicar.com', size: EICAR_TEST_STRING.length, etag: opened.etag });
});

t.test('a binary object of 3 MiB streams byte for byte', async (t) => {
  const body = Buffer.alloc(3 * 1024 * 1024);
  for (let i = 0; i < body.length; i++) body[i] = (i * 7919) & 0xff;
  await s3.client().send(new PutObjectCommand({ Bucket: BUCKET, Key: 'bin/blob', Body: body }));
  const opened = await connector(t).open('bin/blob');
  t.ok((await readAll(opened)).equals(body));
});

t.test('a missing object is not_found on open and null on stat; a missing bucket is a configuration error', async (t) => {
  const c = connector(t);
  await t.rejects(c.open('no/such/key'), { name: 'ConnectorError', kind: 'not_found', message: /GetObject s3:\/\/read-bucket\/no\/such\/key: the object does not exist/ });
  t.equal(await c.stat('no/such/key'), null);
  const gone = connector(t, { bucket: 'no-such-bucket' });
  await t.rejects(gone.open('x'), { kind: 'configuration', message: /bucket no-such-bucket does not exist: check the integration's bucket/ });
  await t.rejects(gone.stat('x'), { kind: 'configuration', message: /bucket no-such-bucket does not exist/ }, 'a bare 404 of HEAD is told apart from a missing object');
});

t.test('an open read holds one limiter slot until its body is consumed or destroyed', async (t) => {
  await s3.client().send(new PutObjectCommand({ Bucket: BUCKET, Key: 'slot/a', Body: 'a' }));
  const limiter = new RequestLimiter({ maxInFlight: 2 });
  const c = connector(t, {}, limiter);
  const a = await c.open('slot/a');
  const b = await c.open('slot/a');
  t.equal(limiter.inFlight, 2, 'both transfers hold a slot');
  const third = c.stat('slot/a');
  await new Promise((r) => setImmediate(r));
  t.equal(limiter.waiting, 1, 'a third request waits for a slot');
  await readAll(a);
  t.match(await third, { size: 1 }, 'consuming a body frees its slot');
  b.stream.destroy();
  await new Promise((r) => b.stream.once('close', r));
  await new Promise((r) => setImmediate(r));
  t.equal(limiter.inFlight, 0, 'destroying a body frees its slot');
});
