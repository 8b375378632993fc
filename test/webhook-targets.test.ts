import http from 'node:http';
import type net from 'node:net';
import t from 'tap';
import { fullScanStart } from '../src/db/sql/full-scans.ts';
import { checkWebhookTarget, isPrivateAddress } from '../src/notify/targets.ts';
import { EICAR } from '../src/testing/fixtures.ts';
import { createTestDatabase } from './helpers/db.ts';
import { emulator, fsScope, Stepper, testConfig } from './helpers/pipeline.ts';

t.test('private, loopback and link-local addresses are recognized', async (t) => {
  for (const a of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::1', 'fd00::1', 'fe80::1', '::ffff:127.0.0.1']) {
    t.ok(isPrivateAddress(a), `${a} is private`);
  }
  for (const a of ['8.8.8.8', '172.32.0.1', '192.169.0.1', '2001:4860:4860::8888', '::ffff:8.8.8.8']) {
    t.notOk(isPrivateAddress(a), `${a} is public`);
  }
});

t.test('webhook targets are refused unless allowed', async (t) => {
  const deny = { allowedHosts: [], allowPrivate: false };
  await t.rejects(checkWebhookTarget('http://127.0.0.1:8080/hook', deny), { message: /private or loopback address 127\.0\.0\.1/, retryable: false });
  await t.rejects(checkWebhookTarget('http://localhost/hook', deny), /resolves to private or loopback address/);
  await t.rejects(checkWebhookTarget('http://[::1]/hook', deny), /private or loopback address ::1/);
  await t.rejects(checkWebhookTarget('not a url', deny), /is not a valid URL/);
  await t.rejects(checkWebhookTarget('http://8.8.8.8/hook', { allowedHosts: ['hooks.example.com'], allowPrivate: false }), /not in DSX_WEBHOOK_ALLOWED_HOSTS/);
  await checkWebhookTarget('http://8.8.8.8/hook', deny);
  await checkWebhookTarget('http://127.0.0.1:8080/hook', { allowedHosts: [], allowPrivate: true });
  await checkWebhookTarget('https://HOOKS.example.com/x', { allowedHosts: ['hooks.example.com'], allowPrivate: true });
});

t.test('a notification to a refused target fails in the ledger and sends nothing', async (t) => {
  const db = await createTestDatabase(t);
  let received = 0;
  const srv = http.createServer((req, res) => {
    received++;
    res.end();
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => srv.close(() => r())));
  await db.pool.query(`select dsx.create_notification_channel('internal', $1, 'secret-123')`, [
    `http://127.0.0.1:${(srv.address() as net.AddressInfo).port}/hook`,
  ]);
  const emu = await emulator(t);
  const scope = await fsScope(db.pool, { dir: t.testdir({ 'bad.com': EICAR }) });
  const stepper = new Stepper(db.pool, { dsxaUrl: emu.url, config: testConfig({ webhookAllowPrivate: false }) });
  await fullScanStart(db.pool, scope.id, 'tester');
  await stepper.runAll();
  const { rows } = await db.pool.query(`select kind, status, detail from dsx.side_effects`);
  t.match(rows, [{ kind: 'notification', status: 'failed', detail: /private or loopback address 127\.0\.0\.1/ }]);
  t.equal(received, 0);
});
