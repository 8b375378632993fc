import t from 'tap';
import { fullScanStart } from '../src/db/sql/full-scans.ts';
import { addressRefusal, planConnection, TargetRefused } from '../src/notify/targets.ts';
import { EICAR } from '../src/testing/fixtures.ts';
import { createTestDatabase } from './helpers/db.ts';
import { emulator, fsScope, queuedJobs, Stepper, testConfig } from './helpers/pipeline.ts';
import { startReceiver } from './helpers/webhook-receiver.ts';

t.test('every address that is not globally routable unicast is refused, with the range it is in', async (t) => {
  const refused: [string, RegExp][] = [
    ['127.0.0.1', /^loopback$/],
    ['127.255.0.9', /^loopback$/],
    ['10.1.2.3', /^private$/],
    ['172.16.0.1', /^private$/],
    ['172.31.255.255', /^private$/],
    ['192.168.1.1', /^private$/],
    ['169.254.169.254', /^link-local$/],
    ['100.64.0.1', /carrier-grade NAT/],
    ['0.0.0.0', /^unspecified$/],
    ['0.1.2.3', /^unspecified$/],
    ['255.255.255.255', /^broadcast$/],
    ['224.0.0.1', /^multicast$/],
    ['192.0.2.10', /^reserved/], // TEST-NET-1
    ['198.51.100.7', /^reserved/], // TEST-NET-2
    ['203.0.113.7', /^reserved/], // TEST-NET-3
    ['198.18.0.1', /^reserved/], // benchmarking
    ['192.0.0.8', /^reserved/],
    ['240.0.0.1', /^reserved/],
    ['::1', /^loopback$/],
    ['::', /^unspecified$/],
    ['fd00::1', /unique local/],
    ['fc00::1', /unique local/],
    ['fe80::1', /^link-local$/],
    ['fec0::1', /site-local/],
    ['ff02::1', /^multicast$/],
    ['2001:db8::1', /^reserved/], // documentation
    ['2001:2::1', /^benchmarking$/],
    ['100::1', /discard-only/],
    ['3fff::1', /^reserved/],
    ['::ffff:127.0.0.1', /^IPv4-mapped 127\.0\.0\.1: loopback$/],
    ['::ffff:7f00:1', /^IPv4-mapped 127\.0\.0\.1: loopback$/],
    ['::ffff:169.254.169.254', /^IPv4-mapped 169\.254\.169\.254: link-local$/],
    ['::ffff:0:7f00:1', /^IPv4-translated 127\.0\.0\.1: loopback$/],
    ['::7f00:1', /^IPv4-compatible 127\.0\.0\.1: loopback$/],
    ['::808:808', /^IPv4-compatible \(deprecated/],
    ['64:ff9b::7f00:1', /^NAT64 127\.0\.0\.1: loopback$/],
    ['64:ff9b::a00:1', /^NAT64 10\.0\.0\.1: private$/],
    ['64:ff9b:1::808:808', /local-use NAT64/],
    ['2002:7f00:1::', /^6to4 127\.0\.0\.1: loopback$/],
    ['2002:c0a8:101::1', /^6to4 192\.168\.1\.1: private$/],
    ['2001:0:4136:e378:8000:63bf:80ff:fffe', /^Teredo client 127\.0\.0\.1: loopback$/],
    ['2001:0:7f00:1::1', /^Teredo server 127\.0\.0\.1: loopback$/],
    ['200::1', /outside the global unicast range/],
    ['not-an-ip', /not an IP address/],
    ['0177.0.0.1', /not an IP address/], // only strict forms: the socket must see the same spelling
  ];
  for (const [address, why] of refused) t.match(addressRefusal(address), why, `${address} is refused`);
  for (const address of [
    '8.8.8.8', '1.1.1.1', '172.32.0.1', '192.169.0.1', '100.128.0.1', '2001:4860:4860::8888', '2606:4700::1111',
    '::ffff:8.8.8.8', '64:ff9b::808:808', '2002:808:808::1', '2001:0:4136:e378:8000:63bf:f7f7:f7f7',
  ]) {
    t.equal(addressRefusal(address), null, `${address} is public`);
  }
});

t.test('the host list and IP literals are checked before any connection is planned', async (t) => {
  const deny = { allowedHosts: [], allowPrivate: false };
  const refusal = (url: string, policy: Parameters<typeof planConnection>[1]) => {
    try {
      planConnection(new URL(url), policy);
    } catch (err) {
      if (err instanceof TargetRefused) return err;
      throw err;
    }
    return null;
  };
  t.match(refusal('http://127.0.0.1:8080/hook', deny), { retryable: false, message: /127\.0\.0\.1 is not a public address \(loopback\)/ });
  t.match(refusal('http://[::1]/hook', deny), { message: /::1 is not a public address \(loopback\)/ });
  t.match(refusal('http://8.8.8.8/hook', { allowedHosts: ['hooks.example.com'], allowPrivate: false }), { retryable: false, message: /not in DSX_WEBHOOK_ALLOWED_HOSTS/ });
  t.match(refusal('http://127.0.0.1/hook', { allowedHosts: ['hooks.example.com'], allowPrivate: true }), { message: /not in DSX_WEBHOOK_ALLOWED_HOSTS/ });
  t.equal(refusal('http://8.8.8.8/hook', deny), null);
  t.equal(refusal('http://127.0.0.1:8080/hook', { allowedHosts: [], allowPrivate: true }), null);
  t.equal(refusal('https://HOOKS.example.com./x', { allowedHosts: ['hooks.example.com'], allowPrivate: false }), null, 'case and a trailing dot do not matter');
  t.same(planConnection(new URL('http://[::ffff:8.8.8.8]/'), deny).host, '::ffff:808:808', 'a literal is connected to as vetted');
  t.match(planConnection(new URL('https://hooks.example.com/'), deny), { host: 'hooks.example.com', servername: 'hooks.example.com' });
  t.equal(planConnection(new URL('https://8.8.8.8/'), deny).servername, undefined, 'no SNI for an IP literal');
});

/** Runs the pipeline until the notification job; runs that one as its last attempt (so a retryable failure is recorded). */
async function runToNotification(stepper: Stepper, pool: import('pg').Pool): Promise<void> {
  for (;;) {
    const [next] = await queuedJobs(pool);
    if (!next) return;
    if (next.task === 'send-notification') await stepper.run(next, { attempts: next.max_attempts, maxAttempts: next.max_attempts });
    else await stepper.run(next);
    await stepper.complete(next);
  }
}

t.test('a notification to a refused target fails in the ledger and the receiver sees no connection', async (t) => {
  const db = await createTestDatabase(t);
  const receiver = (await startReceiver(t))!;
  // The IPv4-mapped spelling of the receiver's loopback address: the bypass of issue 13.
  await db.pool.query(`select dsx.create_notification_channel('internal', $1, 'secret-123')`, [`http://[::ffff:127.0.0.1]:${receiver.port}/hook`]);
  const emu = await emulator(t);
  const scope = await fsScope(db.pool, { dir: t.testdir({ 'bad.com': EICAR }) });
  const stepper = new Stepper(db.pool, { dsxaUrl: emu.url, config: testConfig({ webhookAllowPrivate: false }) });
  await fullScanStart(db.pool, scope.id, 'tester');
  await stepper.runAll();
  const { rows } = await db.pool.query(`select kind, status, detail from dsx.side_effects`);
  t.match(rows, [{ kind: 'notification', status: 'failed', detail: /::ffff:7f00:1 is not a public address \(IPv4-mapped 127\.0\.0\.1: loopback\)/ }]);
  t.equal(receiver.connections(), 0);
});

t.test('a failing receiver\'s body never reaches the ledger detail, only its status', async (t) => {
  const db = await createTestDatabase(t);
  const marker = 'MARKER-ledger-5c1e';
  const receiver = (await startReceiver(t, {
    respond: (_req, res) => res.writeHead(500, `${marker} phrase`, { 'x-debug': marker }).end(`${marker} stack trace of the receiver`),
  }))!;
  await db.pool.query(`select dsx.create_notification_channel('ops', $1, 'secret-123')`, [`http://127.0.0.1:${receiver.port}/hook?token=${marker}`]);
  const emu = await emulator(t);
  const scope = await fsScope(db.pool, { dir: t.testdir({ 'bad.com': EICAR }) });
  const stepper = new Stepper(db.pool, { dsxaUrl: emu.url });
  await fullScanStart(db.pool, scope.id, 'tester');
  await runToNotification(stepper, db.pool);
  t.equal(receiver.requests.length, 1, 'the receiver was reached');
  const { rows } = await db.pool.query(`select status, detail from dsx.side_effects where kind = 'notification'`);
  t.match(rows, [{ status: 'failed', detail: /^webhook http:\/\/127\.0\.0\.1:\d+\/hook answered HTTP 500 Internal Server Error$/ }]);
  t.notMatch(JSON.stringify(rows), marker, 'neither the body, the reason phrase, a header nor the query string is stored');
});
