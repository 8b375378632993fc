/**
 * The CLI for object stores, against real local servers: `integration add --kind s3|azure_blob` with
 * the store's options and a credentials file (never a secret on the command line, never echoed back),
 * refused with one line naming the field when a setting or credential is wrong, and `integration test`
 * printing one line per capability the scopes need.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import t from 'tap';
import { PROJECT_DIR } from '../src/config.ts';
import { startAzurite } from '../src/testing/azurite.ts';
import { startLocalFauxqs } from '../src/testing/s3-servers.ts';
import { createTestDatabase } from './helpers/db.ts';

const BIN = path.join(PROJECT_DIR, 'bin', 'dsx-connect.js');
const MARKER = 'cli-secret-marker-31337';

function cli(env: NodeJS.ProcessEnv, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, DSX_LOG_LEVEL: 'warn', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout: stdout.trim(), stderr: stderr.trim() }));
  });
}

t.test('an s3 integration from the command line, its credentials from a file, tested capability by capability', async (t) => {
  const s3 = await startLocalFauxqs({ buckets: ['scanned'] });
  t.teardown(() => s3.stop());
  await s3.client().send(new PutObjectCommand({ Bucket: 'scanned', Key: 'in/a.txt', Body: 'hello' }));
  const db = await createTestDatabase(t);
  const env = { DATABASE_URL: db.url };
  const dir = t.testdir({
    'creds.json': JSON.stringify({ accessKeyId: 'AKIDEXAMPLE', secretAccessKey: MARKER }),
    'bad-shape.json': JSON.stringify({ accessKey: MARKER }),
    'not-json.json': `{${MARKER}`,
  });

  const add = await cli(env, 'integration', 'add', '--name', 'bucket', '--kind', 's3', '--bucket', 'scanned', '--endpoint', s3.endpoint,
    '--quarantine-prefix', 'held/', '--credentials-file', path.join(dir, 'creds.json'), '--json');
  t.equal(add.code, 0, add.stderr);
  t.match(JSON.parse(add.stdout), { kind: 's3', settings: { bucket: 'scanned', endpoint: s3.endpoint, quarantine_prefix: 'held/' } });
  t.notOk(add.stdout.includes(MARKER), 'the credentials are not printed');
  const { rows } = await db.pool.query(`select credentials->>'secretAccessKey' as s from dsx_private.integration_credentials`);
  t.same(rows, [{ s: MARKER }], 'stored write-only');

  const refusals: [string[], RegExp][] = [
    [['--bucket', 'scanned', '--credentials-file', path.join(dir, 'bad-shape.json')], /credentials\.(accessKeyId|accessKey)/],
    [['--bucket', 'scanned', '--credentials-file', path.join(dir, 'not-json.json')], /is not valid JSON/],
    [['--bucket', 'scanned', '--credentials-file', path.join(dir, 'missing.json')], /cannot read --credentials-file .*ENOENT/],
    [['--bucket', 'Not_A_Bucket'], /bucket/],
    [['--bucket', 'scanned', '--quarantine-bucket', 'quarantined', '--quarantine-prefix', 'q/'], /quarantine_bucket or quarantine_prefix, not both/],
    [['--bucket', 'scanned', '--tag-mode', 'sometimes'], /tag_mode/],
    [['--bucket', 'scanned', '--container', 'c1'], /are for azure_blob integrations/],
    [[], /needs --bucket NAME/],
  ];
  for (const [args, message] of refusals) {
    const r = await cli(env, 'integration', 'add', '--name', 'other', '--kind', 's3', ...args);
    t.equal(r.code, 1, `refused: ${args.join(' ')}`);
    t.match(r.stderr, message, r.stderr);
    t.equal(r.stderr.split('\n').filter((l) => l.startsWith('error:')).length, 1, 'one error line');
    t.notOk(r.stderr.includes(MARKER), 'never echoing a credential');
  }
  t.equal((await db.pool.query(`select count(*)::int as n from dsx.integrations where name = 'other'`)).rows[0].n, 0, 'nothing half-written');

  const scope = await cli(env, 'scope', 'add', '--integration', 'bucket', '--name', 'in', '--root', 'in', '--policy', '{"malicious": {"remediation": "move"}}');
  t.equal(scope.code, 0, scope.stderr);
  const tested = await cli(env, 'integration', 'test', 'bucket');
  t.equal(tested.code, 0, tested.stderr);
  t.match(tested.stdout, /^ok\s+list\s+scope in: /m, 'list');
  t.match(tested.stdout, /^ok\s+read\s+scope in: /m, 'read');
  t.match(tested.stdout, /^ok\s+quarantine\s+scope in: /m, 'quarantine (the policy moves)');
  t.match(tested.stdout, /^skip\s+tag\s+scope in: not needed by the policy/m, 'tags: not needed');
  const { Contents } = await s3.client().send(new (await import('@aws-sdk/client-s3')).ListObjectsV2Command({ Bucket: 'scanned' }));
  t.same(Contents?.map((c) => c.Key), ['in/a.txt'], 'no object changed or left behind but the probe\'s own, removed');
});

t.test('an azure_blob integration from the command line; a wrong key shows in integration test', async (t) => {
  const az = await startAzurite({ blob: true });
  t.teardown(() => az.stop());
  const db = await createTestDatabase(t);
  const env = { DATABASE_URL: db.url };
  const { BlobServiceClient } = await import('@azure/storage-blob');
  await BlobServiceClient.fromConnectionString(az.connectionString).getContainerClient('docs').create();
  const dir = t.testdir({
    'conn.json': JSON.stringify({ connectionString: az.connectionString }),
    'wrong-key.json': JSON.stringify({ accountName: 'devstoreaccount1', accountKey: Buffer.from(MARKER).toString('base64') }),
  });
  const add = await cli(env, 'integration', 'add', '--name', 'blobs', '--kind', 'azure_blob', '--container', 'docs', '--credentials-file', path.join(dir, 'conn.json'));
  t.equal(add.code, 0, add.stderr);
  await cli(env, 'scope', 'add', '--integration', 'blobs', '--name', 'docs', '--root', '', '--policy', '{"clean": {"tag": true}}');
  const ok = await cli(env, 'integration', 'test', 'blobs');
  t.equal(ok.code, 0, ok.stdout + ok.stderr);
  t.match(ok.stdout, /^ok\s+tag\s+scope docs: /m, 'tags work (the policy tags clean objects)');

  const wrong = await cli(env, 'integration', 'add', '--name', 'wrong', '--kind', 'azure_blob', '--container', 'docs', '--account-url', az.blobAccountUrl!,
    '--credentials-file', path.join(dir, 'wrong-key.json'));
  t.equal(wrong.code, 0, wrong.stderr);
  const failed = await cli(env, 'integration', 'test', 'wrong', '--all');
  t.equal(failed.code, 1, 'exit 1 when a needed capability fails');
  t.match(failed.stdout, /^FAIL\s+list\s+/m, 'listing fails with the reason');
  t.notOk(failed.stdout.includes(MARKER) || failed.stderr.includes(MARKER), 'the key is never echoed');
  fs.rmSync(dir, { recursive: true, force: true });
});
