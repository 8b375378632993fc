/**
 * Configuration problems against real servers: bad credentials (s3rver checks the key id), a missing
 * bucket (fauxqs), an endpoint whose host does not resolve, a refused connection; and settings or
 * credentials the schemas refuse, with one-line messages that never echo a value.
 */
import { PutObjectCommand } from '@aws-sdk/client-s3';
import t, { type Test } from 'tap';
import { RequestLimiter } from '../src/connectors/rate-limit.ts';
import { S3Connector } from '../src/connectors/s3/connector.ts';
import { limiterOptionsOf, parseS3Settings } from '../src/connectors/s3/settings.ts';
import { ConnectorError } from '../src/connectors/types.ts';
import { freePort } from '../src/testing/ports.ts';
import { startLocalFauxqs, startLocalS3rver, type LocalFauxqs, type LocalS3 } from '../src/testing/s3-servers.ts';

let fq: LocalFauxqs;
let rver: LocalS3;
t.before(async () => {
  [fq, rver] = await Promise.all([startLocalFauxqs({ buckets: ['real-bucket'] }), startLocalS3rver({ buckets: ['auth-bucket'] })]);
});
t.teardown(async () => {
  await Promise.all([fq.stop(), rver.stop()]);
});

function connector(t: Test, settings: Record<string, unknown>, credentials: unknown): S3Connector {
  const c = new S3Connector({ settings, credentials, limiter: new RequestLimiter() });
  t.teardown(() => c.close());
  return c;
}

function thrown(fn: () => unknown): ConnectorError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConnectorError) return err;
    throw err;
  }
  throw new Error('expected a ConnectorError');
}

t.test('an access key the store does not know is a configuration error, and a quarantine writes nothing', async (t) => {
  await rver.client().send(new PutObjectCommand({ Bucket: 'auth-bucket', Key: 'kept.txt', Body: 'kept' }));
  const c = connector(t, { bucket: 'auth-bucket', endpoint: rver.endpoint }, { accessKeyId: 'NOT-A-KEY', secretAccessKey: 'S3RVER' });
  await t.rejects(c.listPage('', null, 10), {
    kind: 'configuration',
    retryable: false,
    message: "ListObjectsV2 s3://auth-bucket/: the access key id is not known to the store: fix the integration's credentials",
  });
  // A HEAD answer has no body, so a refused HEAD is only a 403: denied, and nothing happens.
  await t.rejects(c.quarantine('kept.txt', { key: 'd' }), { kind: 'permission', message: /HeadObject s3:\/\/auth-bucket\/kept\.txt: access denied/ });
  const good = connector(t, { bucket: 'auth-bucket', endpoint: rver.endpoint }, rver.credentials);
  t.same((await good.listPage('', null, 10)).objects.map((o) => o.identity), ['kept.txt'], 'the object is untouched and nothing was added');
});

t.test('a bucket that does not exist is a configuration error naming it', async (t) => {
  const c = connector(t, { bucket: 'no-such-bucket', endpoint: fq.endpoint }, fq.credentials);
  await t.rejects(c.listPage('', null, 10), {
    kind: 'configuration',
    message: "ListObjectsV2 s3://no-such-bucket/: bucket no-such-bucket does not exist: check the integration's bucket, region and endpoint",
  });
  await t.rejects(c.remove('x'), { kind: 'configuration', message: /bucket no-such-bucket does not exist/ }, 'a delete does not report a missing bucket as already done');
});

t.test('an endpoint whose host does not resolve is a configuration error; a refused connection is transient', async (t) => {
  const nowhere = connector(t, { bucket: 'real-bucket', endpoint: 'http://dsx-no-such-host.invalid:9000' }, fq.credentials);
  await t.rejects(nowhere.listPage('', null, 10), {
    kind: 'configuration',
    message: "ListObjectsV2 s3://real-bucket/: the endpoint host dsx-no-such-host.invalid cannot be resolved: fix the integration's endpoint (or region)",
  });
  const closed = connector(t, { bucket: 'real-bucket', endpoint: `http://127.0.0.1:${await freePort()}` }, fq.credentials);
  await t.rejects(closed.open('x'), { kind: 'transient', retryable: true, message: /could not be reached or dropped the connection \(ECONNREFUSED/ });
});

t.test('settings the schema refuses name the field and what to do', async (t) => {
  const cases: [unknown, RegExp][] = [
    [{}, /settings\.bucket: Invalid input: expected string, received undefined/],
    [{ bucket: 'b' }, /settings\.bucket: must be a bucket name/],
    [{ bucket: 'my-bucket', quarantine_bucket: 'q-bucket', quarantine_prefix: 'x/' }, /set quarantine_bucket or quarantine_prefix, not both/],
    [{ bucket: 'my-bucket', quarantine_bucket: 'my-bucket' }, /must differ from bucket; use quarantine_prefix/],
    [{ bucket: 'my-bucket', endpoint: 'localhost:9000' }, /settings\.endpoint: must be an http\(s\) URL/],
    [{ bucket: 'my-bucket', quarantine_buckt: 'x' }, /Unrecognized key: "quarantine_buckt"/],
    [{ bucket: 'my-bucket', prefix: 'dsx-quarantine/in' }, /settings\.prefix: the integration prefix lies inside the quarantine prefix/],
    [{ bucket: 'my-bucket', tag_mode: 'index' }, /settings\.tag_mode: Invalid option/],
    [{ bucket: 'my-bucket', limits: { max_in_flight: 0 } }, /settings\.limits\.max_in_flight: Too small/],
  ];
  for (const [settings, message] of cases) {
    const err = thrown(() => new S3Connector({ settings, limiter: new RequestLimiter() }));
    t.equal(err.kind, 'configuration');
    t.match(err.message, message);
    t.notMatch(err.message, /\n/, 'one line');
  }
  const s = parseS3Settings({ bucket: 'my-bucket', prefix: 'data', limits: { max_in_flight: 8, max_per_second: 100 } });
  t.equal(s.prefix, 'data/', 'a prefix is a directory');
  t.same(limiterOptionsOf(s), { maxInFlight: 8, maxPerSecond: 100 });
});

t.test('credentials the schema refuses name the field and never echo a value', async (t) => {
  const secret = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
  const cases: [unknown, RegExp][] = [
    [{ accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secret }, /credentials\.secretAccessKey: Invalid input: expected string, received undefined/],
    [{ accessKeyId: 12345, secretAccessKey: secret }, /credentials\.accessKeyId: Invalid input: expected string, received number/],
    [{ accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: secret, region: secret }, /Unrecognized key: "region"/],
    [secret, /credentials: Invalid input: expected object, received string/],
  ];
  for (const [credentials, message] of cases) {
    const err = thrown(() => new S3Connector({ settings: { bucket: 'my-bucket' }, credentials, limiter: new RequestLimiter() }));
    t.equal(err.kind, 'configuration');
    t.match(err.message, message);
    t.notMatch(err.message, secret);
    t.notMatch(err.message, 'AKIAIOSFODNN7EXAMPLE');
  }
});
