/**
 * Bad input from the storage side: file names with newlines and control characters, names that are not
 * valid UTF-8, a ~4,000-byte path, symlink loops, dangling symlinks, and files that turn into something
 * unreadable between enumeration and fetch. A full scan must finalize every file exactly once with an
 * outcome that says what happened, and the invariant checker must pass.
 */
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { FilesystemConnector } from '../src/connectors/filesystem/index.ts';
import { bytesFromName, nameFromBytes } from '../src/connectors/identity.ts';
import { fullScanStart, fullScanVerify } from '../src/db/sql/full-scans.ts';
import { EICAR } from '../src/testing/fixtures.ts';
import { createTestDatabase } from './helpers/db.ts';
import { emulator, fsScope, getScan, queuedJobs, Stepper, testConfig, waitFor, waitForScan, workers } from './helpers/pipeline.ts';
import { jobEvents } from './helpers/wait.ts';

/** A short real directory (the 4,000-byte path must stay under PATH_MAX with its root prefix). */
function tempDir(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-names-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const b = (s: string) => Buffer.from(s, 'utf8');

interface Planted {
  /** Path relative to the root, as bytes (what the filesystem holds). */
  rel: Buffer;
  content: Buffer;
  malicious: boolean;
}

/** Writes a file at `root/rel` (bytes), creating its directories. */
function plant(root: string, rel: Buffer, content: Buffer): void {
  const abs = Buffer.concat([b(`${root}/`), rel]);
  const dir = abs.subarray(0, abs.lastIndexOf(0x2f));
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(abs, content);
}

/** The tree of awkward names; every file has unique content so the scanned bytes can be checked by hash. */
function awkwardTree(root: string): { files: Planted[]; longRel: Buffer } {
  const long: Buffer[] = [];
  // 15 directories of 250 bytes (half of them two-byte characters) and a 200-byte file name: 3,965
  // bytes relative, under Linux's PATH_MAX of 4,096 with the temp root, each name under NAME_MAX 255.
  for (let i = 0; i < 15; i++) long.push(i % 2 ? b(`${String(i).padStart(2, '0')}-${'é'.repeat(124)}`) : b(`${String(i).padStart(2, '0')}-${'d'.repeat(247)}`));
  const longRel = Buffer.concat([...long.flatMap((p) => [p, b('/')]), b(`${'f'.repeat(196)}.txt`)]);
  const specs: [Buffer, boolean][] = [
    [b('new\nline.txt'), false],
    [b('\nleading-newline'), false],
    [b('carriage\rreturn.txt'), false],
    [b('tab\tbell\u0007esc\u001b[31mred.com'), true],
    [b('del\u007f and c1 \u0085 chars.txt'), false],
    [Buffer.from([0x62, 0x61, 0x64, 0x2d, 0xff, 0xfe, 0x2e, 0x63, 0x6f, 0x6d]), true], // "bad-\xff\xfe.com"
    [Buffer.concat([b('lone-continuation-'), Buffer.from([0x80]), b('.txt')]), false],
    [Buffer.concat([b('overlong-'), Buffer.from([0xc0, 0xaf]), b('.txt')]), false], // overlong "/": not a separator
    [Buffer.concat([b('surrogate-'), Buffer.from([0xed, 0xa0, 0x80]), b('.txt')]), false],
    [Buffer.concat([b('latin1-caf'), Buffer.from([0xe9]), b('/inside.txt')]), false], // a directory that is not UTF-8
    [Buffer.concat([b('latin1-caf'), Buffer.from([0xe9]), b('/na'), Buffer.from([0xef]), b('ve.com')]), true],
    // Names Node's lossy decoding would have confused with the ones above: a real U+FFFD, and a real
    // private-use character from the range the connector uses for escapes.
    [b('bad-\uFFFD\uFFFD.com'), false],
    [b('pua-\uF7FF.txt'), false],
    [Buffer.concat([b('pua-'), Buffer.from([0xff]), b('.txt')]), false],
    [longRel, true],
  ];
  const files = specs.map(([rel, malicious], i) => ({
    rel,
    malicious,
    content: b(malicious ? `${EICAR}\nsample ${i}\n` : `awkward sample ${i}\n`),
  }));
  for (const f of files) plant(root, f.rel, f.content);
  // Not objects: symlink loops, a directory loop, a dangling symlink, a FIFO.
  fs.symlinkSync('loop-b', path.join(root, 'loop-a'));
  fs.symlinkSync('loop-a', path.join(root, 'loop-b'));
  fs.symlinkSync('.', path.join(root, 'self'));
  fs.symlinkSync('does-not-exist', path.join(root, 'dangling'));
  execFileSync('mkfifo', [path.join(root, 'fifo')]);
  return { files, longRel };
}

const sha256 = (buf: Buffer) => crypto.createHash('sha256').update(buf).digest('hex');

t.test('identities of awkward names round-trip to the same bytes, and no two names share one', async (t) => {
  const root = tempDir(t);
  const { files, longRel } = awkwardTree(root);
  t.ok(longRel.length > 3900 && longRel.length < 4000, `the long path is ${longRel.length} bytes`);
  const c = new FilesystemConnector({ root });
  const listed: string[] = [];
  for (let cursor: string | null = null, i = 0; i === 0 || cursor !== null; i++) {
    const page: { objects: { identity: string }[]; nextCursor: string | null } = await c.listPage('', cursor, 4);
    listed.push(...page.objects.map((o) => o.identity));
    cursor = page.nextCursor;
  }
  t.equal(listed.length, files.length, 'every file is listed; symlinks, loops and the FIFO are not');
  t.equal(new Set(listed).size, listed.length, 'no two files share an identity');
  for (const f of files) {
    const id = nameFromBytes(f.rel);
    t.ok(listed.includes(id), `listed: ${JSON.stringify(id).slice(0, 60)}`);
    t.same(bytesFromName(id), f.rel, 'the identity maps back to the exact bytes');
    const opened = await c.open(id);
    const chunks: Buffer[] = [];
    for await (const chunk of opened.stream) chunks.push(chunk as Buffer);
    t.same(Buffer.concat(chunks), f.content, 'open reads that file');
  }
  t.equal(nameFromBytes(b('plain ünïcödé 日本語.txt')), 'plain ünïcödé 日本語.txt', 'valid UTF-8 names are their own identity');
  t.not(nameFromBytes(Buffer.from([0x61, 0xff])), nameFromBytes(b('a\uFFFD')), 'an invalid byte is not confused with U+FFFD');
});

t.test('a full scan of awkward names finalizes every file once, scanning the right bytes, and verifies', async (t) => {
  const db = await createTestDatabase(t);
  const root = tempDir(t);
  const { files } = awkwardTree(root);
  const emu = await emulator(t);
  const scope = await fsScope(db.pool, { dir: root, policy: { malicious: { remediation: 'move', notify: false } } });
  const dataDir = tempDir(t); // the default quarantine lives there, outside the share
  const w = await workers(t, db.pool, { dsxaUrl: emu.url, config: testConfig({ dataDir }) });
  const { fullScanId } = await fullScanStart(db.pool, scope.id, 'tester');
  const scan = await waitForScan(db.pool, fullScanId, 60_000);
  const malicious = files.filter((f) => f.malicious).length;
  t.match(scan, { status: 'completed', discovered: files.length, finalized: files.length, malicious_count: malicious, clean_count: files.length - malicious, fetch_failed_count: 0 });

  const { rows } = await db.pool.query(
    `select object_identity, outcome, raw_result->'file_info'->>'file_hash' as hash from dsx.scan_results where full_scan_id = $1`,
    [fullScanId],
  );
  const byIdentity = new Map(rows.map((r) => [r.object_identity as string, r]));
  t.equal(byIdentity.size, files.length, 'one result per file');
  for (const f of files) {
    const r = byIdentity.get(nameFromBytes(f.rel));
    t.ok(r, `a result for ${JSON.stringify(nameFromBytes(f.rel)).slice(0, 60)}`);
    t.equal(r?.outcome, f.malicious ? 'malicious' : 'clean');
    t.equal(r?.hash, sha256(f.content), 'DSXA received exactly this file\'s bytes');
  }
  // Remediation acted on the same bytes: each malicious file moved into quarantine under its own name.
  const effects = async () => (await db.pool.query(`select status, count(*)::int as n from dsx.side_effects group by 1`)).rows;
  await waitFor(async () => (await effects()).every((e) => e.status !== 'pending' && e.status !== 'executing'), 'the remediations to run', 30_000, jobEvents(w));
  t.same(await effects(), [{ status: 'done', n: malicious }]);
  const { rows: moves } = await db.pool.query(
    `select r.object_identity, e.detail from dsx.side_effects e join dsx.scan_results r on r.id = e.scan_result_id`,
  );
  const quarantine = path.join(dataDir, 'quarantine', String(scope.integration_id));
  for (const f of files.filter((x) => x.malicious)) {
    t.notOk(fs.existsSync(Buffer.concat([b(`${root}/`), f.rel])), 'moved away');
    const move = moves.find((m) => m.object_identity === nameFromBytes(f.rel));
    const dest = String(move?.detail).replace(/^moved to /, '');
    t.ok(bytesFromName(dest).subarray(0, quarantine.length + 1).equals(b(`${quarantine}/`)), 'the ledger names a destination in the quarantine outside the share');
    t.same(fs.readFileSync(bytesFromName(dest)), f.content, 'into quarantine, byte for byte');
  }
  for (const c of await fullScanVerify(db.pool, fullScanId)) t.ok(c.ok, `${c.check_name}: ${c.detail}`);
});

t.test('files that become unreadable after enumeration are recorded as fetch_failed with a reason, not lost', async (t) => {
  const db = await createTestDatabase(t);
  const root = tempDir(t);
  for (const name of ['becomes-loop.txt', 'becomes-dir.txt', 'becomes-fifo.txt', 'becomes-dangling.txt', 'vanishes.txt', 'stays.txt']) {
    fs.writeFileSync(path.join(root, name), `${name}\n`);
  }
  const emu = await emulator(t);
  const scope = await fsScope(db.pool, { dir: root });
  const stepper = new Stepper(db.pool, { dsxaUrl: emu.url });
  const { fullScanId } = await fullScanStart(db.pool, scope.id, 'tester');
  await stepper.drain('full-scan-scope');
  await stepper.drain('enumerate-scope-page');
  t.equal((await queuedJobs(db.pool, 'scan-object')).length, 6, 'all six enumerated');

  const at = (n: string) => path.join(root, n);
  fs.rmSync(at('becomes-loop.txt'));
  fs.symlinkSync('becomes-loop.txt', at('becomes-loop.txt')); // a link to itself
  fs.rmSync(at('becomes-dir.txt'));
  fs.mkdirSync(at('becomes-dir.txt'));
  fs.rmSync(at('becomes-fifo.txt'));
  execFileSync('mkfifo', [at('becomes-fifo.txt')]); // opening it for reading would block forever
  fs.rmSync(at('becomes-dangling.txt'));
  fs.symlinkSync('nowhere', at('becomes-dangling.txt'));
  fs.rmSync(at('vanishes.txt'));

  await stepper.runAll(); // every failure here is final: no job is retried, none hangs
  const scan = await getScan(db.pool, fullScanId);
  t.match(scan, { status: 'completed', discovered: 6, finalized: 6, clean_count: 1, fetch_failed_count: 5 });
  const { rows } = await db.pool.query(
    `select object_identity as id, outcome, reason, raw_reason from dsx.scan_results where full_scan_id = $1 order by 1`,
    [fullScanId],
  );
  t.match(rows, [
    { id: 'becomes-dangling.txt', outcome: 'fetch_failed', reason: 'not_found', raw_reason: /does not exist/ },
    { id: 'becomes-dir.txt', outcome: 'fetch_failed', reason: 'invalid_identity', raw_reason: /not a regular file/ },
    { id: 'becomes-fifo.txt', outcome: 'fetch_failed', reason: 'invalid_identity', raw_reason: /not a regular file/ },
    { id: 'becomes-loop.txt', outcome: 'fetch_failed', reason: 'invalid_identity', raw_reason: /too many levels of symbolic links/ },
    { id: 'stays.txt', outcome: 'clean', reason: null },
    { id: 'vanishes.txt', outcome: 'fetch_failed', reason: 'not_found', raw_reason: /does not exist/ },
  ]);
  for (const c of await fullScanVerify(db.pool, fullScanId)) t.ok(c.ok, `${c.check_name}: ${c.detail}`);
});
