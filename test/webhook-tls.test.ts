/**
 * HTTPS webhooks keep TLS hostname verification and SNI although the socket connects to an address the
 * guard vetted: a real HTTPS receiver on loopback with a certificate for one name, made by openssl and
 * trusted for this test process only.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import tls from 'node:tls';
import { promisify } from 'node:util';
import t from 'tap';
import type { Resolver, TargetPolicy } from '../src/notify/targets.ts';
import { deliverWebhook, verifySignature, WebhookError } from '../src/notify/webhook.ts';
import { startReceiver } from './helpers/webhook-receiver.ts';

/** A self-signed certificate for `name` (P-256, valid one day). */
async function certificateFor(dir: string, name: string): Promise<{ cert: string; key: string }> {
  const keyFile = path.join(dir, 'key.pem');
  const certFile = path.join(dir, 'cert.pem');
  await promisify(execFile)('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', `/CN=${name}`, '-addext', `subjectAltName=DNS:${name}`, '-keyout', keyFile, '-out', certFile,
  ]);
  return { cert: await fs.readFile(certFile, 'utf8'), key: await fs.readFile(keyFile, 'utf8') };
}

async function rejection(p: Promise<unknown>): Promise<WebhookError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof WebhookError) return err;
    throw err;
  }
  throw new Error('expected a WebhookError');
}

t.test('an https webhook sends SNI for the URL host and verifies the certificate against it', async (t) => {
  const tlsFiles = await certificateFor(t.testdir(), 'hooks.test');
  const receiver = (await startReceiver(t, { tls: tlsFiles }))!;
  const defaults = tls.getCACertificates('default');
  tls.setDefaultCACertificates([...defaults, tlsFiles.cert]);
  t.teardown(() => tls.setDefaultCACertificates(defaults));

  let calls = 0;
  const toReceiver: Resolver = async () => {
    calls++;
    return [{ address: '127.0.0.1' }];
  };
  const target: TargetPolicy = { allowedHosts: [], allowPrivate: true, resolve: toReceiver };
  const send = (host: string) =>
    deliverWebhook({ url: `https://${host}:${receiver.port}/hook?token=t`, secret: 'tls-secret', body: { a: 1 }, idempotencyKey: 'k-tls', target });

  t.same(await send('hooks.test'), { status: 204 });
  t.equal(calls, 1, 'resolved once');
  const [got] = receiver.requests;
  t.equal(got?.servername, 'hooks.test', 'SNI names the URL host, not the address connected to');
  t.equal(got?.headers.host, `hooks.test:${receiver.port}`);
  t.equal(got?.url, '/hook?token=t');
  t.ok(verifySignature('tls-secret', got!.body, String(got!.headers['x-dsx-signature'])), 'signed as over http');

  // The same address under another name: the certificate does not match, so nothing is sent.
  const mismatch = await rejection(send('other.test'));
  t.equal(mismatch.retryable, true);
  t.match(mismatch.message, /^webhook https:\/\/other\.test:\d+\/hook could not be reached: ERR_TLS_CERT_ALTNAME_INVALID$/);
  t.equal(receiver.requests.length, 1, 'no request over a connection whose certificate names another host');

  // Untrusted again: the certificate chain is verified, not only the name.
  tls.setDefaultCACertificates(defaults);
  const untrusted = await rejection(send('hooks.test'));
  t.match(untrusted.message, /could not be reached: DEPTH_ZERO_SELF_SIGNED_CERT$/);
  t.equal(receiver.requests.length, 1);
});
