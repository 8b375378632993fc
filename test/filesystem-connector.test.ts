import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import t, { type Test } from 'tap';
import { FilesystemConnector } from '../src/connectors/filesystem/index.ts';
import { isWithin, normalizeRelativePath } from '../src/connectors/identity.ts';
import { ConnectorError, type ConnectorErrorKind, type Page } from '../src/connectors/types.ts';

/** A fresh real directory, removed after the test. */
function tempDir(t: Test, prefix = 'dsx-fs-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function write(root: string, rel: string, content = `contents of ${rel}\n`): void {
  const p = path.join(root, rel);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, content);
}

/** Files of the sample tree, in the expected enumeration order (depth-first, code-unit name order). */
const SAMPLE_ORDER = [
  ' lead space.txt',
  'A/upper.txt',
  'Zeta',
  'a/x.txt', // directory "a" sorts before file "a.txt"
  'a.txt',
  'b b/ c.txt',
  'b b/d d.txt',
  'docs/A/1.txt',
  'docs/a/b.txt',
  'docs/a/c/d/e.txt',
  'docs/empty.txt',
  'docs/zz.txt',
  'docs/ünïcödé/日本語.txt',
  'docs/ünïcödé/😀.txt', // U+1F600 is the surrogate pair D83D DE00: before U+FF61 in code units
  'docs/ünïcödé/｡.txt',
  'empty-1',
  'empty-2',
  'm/n/o/p/q/deep.bin',
  'zz/last.txt',
];

function sampleTree(t: Test): string {
  const root = tempDir(t);
  for (const rel of SAMPLE_ORDER) write(root, rel, rel.includes('empty') ? '' : undefined);
  fs.mkdirSync(path.join(root, 'emptydir/inner'), { recursive: true });
  fs.mkdirSync(path.join(root, 'docs/also-empty'));
  return root;
}

/** Enumerates a whole scope page by page, checking page invariants along the way. */
async function listAll(t: Test, c: FilesystemConnector, scope: string, pageSize: number): Promise<string[]> {
  const out: string[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < 100_000; i++) {
    const page: Page = await c.listPage(scope, cursor, pageSize);
    if (page.objects.length > pageSize) t.fail(`page of ${page.objects.length} > ${pageSize}`);
    if (page.nextCursor !== null && page.objects.length !== pageSize) t.fail('a non-final page must be full');
    out.push(...page.objects.map((o) => o.identity));
    if (page.nextCursor === null) return out;
    cursor = page.nextCursor;
  }
  throw new Error('enumeration did not terminate');
}

/** Independent reference walk (synchronous, whole tree) used as an oracle. */
function referenceWalk(root: string, rel = '', skip: string[] = []): string[] {
  const names = fs.readdirSync(path.join(root, rel)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const out: string[] = [];
  for (const name of names) {
    const r = rel ? `${rel}/${name}` : name;
    const st = fs.lstatSync(path.join(root, r));
    if (st.isDirectory() && !skip.includes(r)) out.push(...referenceWalk(root, r, skip));
    else if (st.isFile()) out.push(r);
  }
  return out;
}

async function rejectsKind(t: Test, p: Promise<unknown>, kind: ConnectorErrorKind, what: string): Promise<void> {
  try {
    await p;
    t.fail(`${what}: expected ConnectorError(${kind})`);
  } catch (err) {
    t.ok(err instanceof ConnectorError, `${what}: is a ConnectorError`);
    t.equal((err as ConnectorError).kind, kind, `${what}: kind ${kind}`);
  }
}

async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

t.test('identity helpers', async (t) => {
  t.equal(normalizeRelativePath(''), '');
  t.equal(normalizeRelativePath('.'), '');
  t.equal(normalizeRelativePath('./'), '');
  t.equal(normalizeRelativePath('a//b/./c/'), 'a/b/c');
  t.equal(normalizeRelativePath('docs/'), 'docs');
  t.equal(normalizeRelativePath('a b/ü.txt'), 'a b/ü.txt');
  t.equal(normalizeRelativePath('a/..b/c..'), 'a/..b/c..', 'dots inside names are fine');
  for (const bad of ['..', '../etc/passwd', 'a/../../b', 'a/..', '/etc/passwd', '/', 'a\0b']) {
    t.throws(() => normalizeRelativePath(bad), { name: 'ConnectorError', kind: 'escape' }, `escape: ${JSON.stringify(bad)}`);
  }
  t.throws(() => normalizeRelativePath('../x'), /"\.\.\/x"/, 'message names the input');
  t.ok(isWithin('', 'anything/at/all'));
  t.ok(isWithin('a/b', 'a/b'));
  t.ok(isWithin('a/b', 'a/b/c'));
  t.notOk(isWithin('a/b', 'a/bc'));
  t.notOk(isWithin('a/b', 'a'));
});

t.test('paging gives the same complete order for every page size', async (t) => {
  const root = sampleTree(t);
  const c = new FilesystemConnector({ root });
  t.equal(c.kind, 'filesystem');
  for (const size of [1, 7, 1000]) {
    const all = await listAll(t, c, '', size);
    t.same(all, SAMPLE_ORDER, `page size ${size}`);
    t.equal(new Set(all).size, all.length, `no duplicates at page size ${size}`);
  }
  t.same(referenceWalk(root), SAMPLE_ORDER, 'the oracle agrees');

  const exact = await c.listPage('', null, SAMPLE_ORDER.length);
  t.equal(exact.objects.length, SAMPLE_ORDER.length);
  t.equal(exact.nextCursor, null, 'a page ending exactly at the last object has no next cursor');
  const short = await c.listPage('', null, SAMPLE_ORDER.length - 1);
  t.not(short.nextCursor, null);
  const tail = await c.listPage('', short.nextCursor, 5);
  t.same(tail.objects.map((o) => o.identity), [SAMPLE_ORDER.at(-1)]);
  t.equal(tail.nextCursor, null);

  const first = (await c.listPage('', null, 1000)).objects;
  const empty = first.find((o) => o.identity === 'empty-1')!;
  t.equal(empty.size, 0, 'empty files are listed with size 0');
  const deep = first.find((o) => o.identity === 'm/n/o/p/q/deep.bin')!;
  t.equal(deep.size, Buffer.byteLength('contents of m/n/o/p/q/deep.bin\n'));
  t.equal(new Date(deep.mtime!).toISOString(), deep.mtime, 'mtime is ISO-8601');
});

t.test('bad page size and bad cursors are invalid', async (t) => {
  const root = sampleTree(t);
  const c = new FilesystemConnector({ root });
  await rejectsKind(t, c.listPage('', null, 0), 'invalid', 'page size 0');
  await rejectsKind(t, c.listPage('', 'not json', 5), 'invalid', 'garbage cursor');
  await rejectsKind(t, c.listPage('docs', JSON.stringify({ after: 'a.txt' }), 5), 'invalid', 'cursor outside the scope');
  await rejectsKind(t, c.listPage('', JSON.stringify({ after: '../x' }), 5), 'escape', 'escaping cursor');
});

t.test('resuming after the cursor file (or its directory) was deleted', async (t) => {
  const root = sampleTree(t);
  const c = new FilesystemConnector({ root });
  const idx = SAMPLE_ORDER.indexOf('docs/a/b.txt');
  const page = await c.listPage('', null, idx + 1);
  t.equal(page.objects.at(-1)!.identity, 'docs/a/b.txt');
  fs.rmSync(path.join(root, 'docs/a/b.txt'));
  t.same(await continueFrom(t, c, page.nextCursor!, 3), SAMPLE_ORDER.slice(idx + 1), 'file deleted');

  const idx2 = SAMPLE_ORDER.indexOf('docs/ünïcödé/日本語.txt');
  const page2 = await c.listPage('', null, idx2); // "docs/a/b.txt" is gone, so this ends on 日本語.txt
  t.equal(page2.objects.at(-1)!.identity, 'docs/ünïcödé/日本語.txt');
  fs.rmSync(path.join(root, 'docs/ünïcödé'), { recursive: true });
  t.same(await continueFrom(t, c, page2.nextCursor!, 2), SAMPLE_ORDER.slice(idx2 + 3), 'whole directory deleted');
});

async function continueFrom(t: Test, c: FilesystemConnector, cursor: string, size: number, scope = ''): Promise<string[]> {
  const out: string[] = [];
  let next: string | null = cursor;
  while (next !== null) {
    const page = await c.listPage(scope, next, size);
    t.ok(page.objects.length <= size);
    out.push(...page.objects.map((o) => o.identity));
    next = page.nextCursor;
  }
  return out;
}

t.test('files added behind the cursor are not returned, files ahead are', async (t) => {
  const root = sampleTree(t);
  const c = new FilesystemConnector({ root });
  const idx = SAMPLE_ORDER.indexOf('docs/empty.txt');
  const page = await c.listPage('', null, idx + 1);
  t.equal(page.objects.at(-1)!.identity, 'docs/empty.txt');
  write(root, '!early.txt'); // before everything
  write(root, 'docs/a/c/new.txt'); // earlier directory
  write(root, 'docs/aaa.txt'); // same directory, before the cursor
  write(root, 'docs/empty.txt0'); // same directory, just after the cursor
  write(root, 'docs/zz/inner.txt'); // new directory ahead ("zz" < "zz.txt")
  write(root, 'zzz.txt'); // at the very end
  const rest = await continueFrom(t, c, page.nextCursor!, 4);
  const expected = SAMPLE_ORDER.slice(idx + 1);
  expected.splice(0, 0, 'docs/empty.txt0', 'docs/zz/inner.txt');
  expected.push('zzz.txt');
  t.same(rest, expected);
});

t.test('scope root limits the listing and prefixes identities', async (t) => {
  const root = sampleTree(t);
  const c = new FilesystemConnector({ root });
  const docs = SAMPLE_ORDER.filter((id) => id.startsWith('docs/'));
  for (const scope of ['docs', 'docs/', './docs', 'docs//']) {
    t.same(await listAll(t, c, scope, 3), docs, `scope ${JSON.stringify(scope)}`);
  }
  t.same(await listAll(t, c, 'docs/a', 1), ['docs/a/b.txt', 'docs/a/c/d/e.txt']);
  t.same(await listAll(t, c, 'emptydir', 5), [], 'a scope without files is empty');
  t.notOk(await listAll(t, c, 'a', 10).then((ids) => ids.includes('a.txt')), '"a" does not contain "a.txt"');
  await rejectsKind(t, c.listPage('missing', null, 5), 'not_found', 'missing scope');
  await rejectsKind(t, c.listPage('../', null, 5), 'escape', 'escaping scope');
  await rejectsKind(t, c.listPage('/etc', null, 5), 'escape', 'absolute scope');
  await rejectsKind(t, c.listPage('a.txt', null, 5), 'invalid', 'scope that is a file');
  await rejectsKind(t, new FilesystemConnector({ root: path.join(root, 'nope') }).listPage('', null, 5), 'not_found', 'missing root');
});

t.test('symlinks are not listed and never lead outside the root', async (t) => {
  const outside = tempDir(t, 'dsx-outside-');
  write(outside, 'secret.txt', 'top secret');
  write(outside, 'dir/inner.txt', 'also secret');
  const root = sampleTree(t);
  fs.symlinkSync(path.join(outside, 'secret.txt'), path.join(root, 'link-out.txt'));
  fs.symlinkSync(path.join(outside, 'dir'), path.join(root, 'link-dir'));
  fs.symlinkSync('..', path.join(root, 'docs/loop')); // directory symlink to its parent
  fs.symlinkSync('.', path.join(root, 'self'));
  fs.symlinkSync('a.txt', path.join(root, 'link-in.txt'));
  fs.symlinkSync('does-not-exist', path.join(root, 'dangling'));
  execFileSync('mkfifo', [path.join(root, 'docs/fifo')]);
  const c = new FilesystemConnector({ root, quarantineDir: path.join(tempDir(t, 'dsx-q-'), 'q') });

  t.same(await listAll(t, c, '', 4), SAMPLE_ORDER, 'symlinks, loops and FIFOs are skipped');
  await rejectsKind(t, c.open('link-out.txt'), 'escape', 'symlinked file pointing outside');
  await rejectsKind(t, c.open('link-dir/inner.txt'), 'escape', 'file below a symlinked directory outside');
  await rejectsKind(t, c.stat('link-out.txt'), 'escape', 'stat of a symlink outside');
  await rejectsKind(t, c.remove('link-out.txt'), 'escape', 'remove of a symlink outside');
  await rejectsKind(t, c.quarantine('link-dir/inner.txt'), 'escape', 'quarantine through a symlink outside');
  t.ok(fs.existsSync(path.join(outside, 'secret.txt')), 'the outside file is untouched');
  t.ok(fs.existsSync(path.join(outside, 'dir/inner.txt')), 'the outside file is untouched');
  await rejectsKind(t, c.listPage('link-dir', null, 5), 'escape', 'scope through a symlink outside');

  const inside = await c.open('link-in.txt');
  t.equal(await readAll(inside.stream), 'contents of a.txt\n', 'a symlink resolving inside the root may be opened');
  await rejectsKind(t, c.open('dangling'), 'not_found', 'dangling symlink');
  await rejectsKind(t, c.open('docs/fifo'), 'invalid', 'a FIFO is refused, not opened');
  await rejectsKind(t, c.open('docs'), 'invalid', 'a directory is not an object');
});

t.test('open, stat and path validation', async (t) => {
  const root = sampleTree(t);
  const c = new FilesystemConnector({ root });
  const opened = await c.open('docs/ünïcödé/日本語.txt');
  t.equal(opened.size, Buffer.byteLength('contents of docs/ünïcödé/日本語.txt\n'));
  t.equal(await readAll(opened.stream), 'contents of docs/ünïcödé/日本語.txt\n');
  const empty = await c.open('empty-1');
  t.equal(empty.size, 0);
  t.equal(await readAll(empty.stream), '');
  const normalized = await c.open('./b b//d d.txt');
  t.equal(await readAll(normalized.stream), 'contents of b b/d d.txt\n', 'identities are normalized');

  await rejectsKind(t, c.open('../etc/passwd'), 'escape', '../etc/passwd');
  await rejectsKind(t, c.open('docs/../../etc/passwd'), 'escape', 'nested ..');
  await rejectsKind(t, c.open('/etc/passwd'), 'escape', 'absolute path');
  await rejectsKind(t, c.open(path.join(root, 'a.txt')), 'escape', 'absolute path inside the root');
  await rejectsKind(t, c.open('a\0.txt'), 'escape', 'NUL byte');
  await rejectsKind(t, c.open('missing.txt'), 'not_found', 'missing file');
  await rejectsKind(t, c.open('a.txt/child'), 'not_found', 'a file used as a directory');
  await rejectsKind(t, c.open(''), 'invalid', 'the root itself');

  const info = await c.stat('docs/zz.txt');
  t.equal(info?.identity, 'docs/zz.txt');
  t.equal(info?.size, Buffer.byteLength('contents of docs/zz.txt\n'));
  t.match(info?.mtime, /^\d{4}-\d\d-\d\dT/);
  t.equal(await c.stat('missing.txt'), null);
  t.equal(await c.stat('docs'), null, 'a directory is not an object');
  await rejectsKind(t, c.stat('../x'), 'escape', 'stat escape');
  t.same(await c.tag('a.txt', { k: 'v' }), { status: 'not_supported', detail: 'plain filesystems have no object tags' });
});

t.test('remove is idempotent', async (t) => {
  const root = sampleTree(t);
  const c = new FilesystemConnector({ root });
  t.equal((await c.remove('docs/zz.txt')).status, 'done');
  t.notOk(fs.existsSync(path.join(root, 'docs/zz.txt')));
  t.equal((await c.remove('docs/zz.txt')).status, 'already_done');
  t.equal((await c.remove('never/existed.txt')).status, 'already_done');
  await rejectsKind(t, c.remove('../outside'), 'escape', 'remove escape');
  await rejectsKind(t, c.remove('docs'), 'invalid', 'remove of a directory');
  t.ok(fs.existsSync(path.join(root, 'docs/a/b.txt')), 'the directory is untouched');
});

t.test('quarantine moves the file out of the share, says where it went, and is idempotent', async (t) => {
  const root = sampleTree(t);
  const q = path.join(tempDir(t, 'dsx-q-'), 'quarantine', '7');
  const c = new FilesystemConnector({ root, quarantineDir: q });
  t.equal(c.quarantineDir, q);

  t.same(await c.quarantine('docs/ünïcödé/日本語.txt'), { status: 'done', detail: `moved to ${q}/docs/ünïcödé/日本語.txt` }, 'the detail names the destination');
  t.notOk(fs.existsSync(path.join(root, 'docs/ünïcödé/日本語.txt')), 'source is gone');
  t.equal(fs.readFileSync(path.join(q, 'docs/ünïcödé/日本語.txt'), 'utf8'), 'contents of docs/ünïcödé/日本語.txt\n');
  t.equal(fs.statSync(q).mode & 0o777, 0o700, 'the quarantine directory is created for the service user only');
  t.equal(fs.statSync(path.join(q, 'docs/ünïcödé')).mode & 0o777, 0o700, 'and so is every level below it');
  t.equal((await c.quarantine('docs/ünïcödé/日本語.txt')).status, 'already_done');
  t.equal((await c.quarantine('a.txt')).status, 'done');
  await rejectsKind(t, c.quarantine('never/existed.txt'), 'not_found', 'neither source nor quarantined copy');
  await rejectsKind(t, c.quarantine('../x'), 'escape', 'quarantine escape');

  const expected = SAMPLE_ORDER.filter((id) => id !== 'docs/ünïcödé/日本語.txt' && id !== 'a.txt');
  t.same(await listAll(t, c, '', 2), expected, 'moved files are no longer listed');
  // The old default lived in the share; a folder of that name now hides nothing from a scan.
  write(root, '.dsx-quarantine/hidden.com');
  t.ok((await listAll(t, c, '', 3)).includes('.dsx-quarantine/hidden.com'), 'a ".dsx-quarantine" folder in the share is scanned like any other');
  await rejectsKind(t, new FilesystemConnector({ root }).quarantine('b b/ c.txt'), 'configuration', 'no quarantine directory configured');
  t.ok(fs.existsSync(path.join(root, 'b b/ c.txt')), 'and the file stays where it is');
});

t.test('quarantine into a custom directory (another filesystem when available)', async (t) => {
  const root = sampleTree(t);
  const shm = '/dev/shm';
  const crossDevice = fs.existsSync(shm) && fs.statSync(shm).dev !== fs.statSync(root).dev;
  const base = crossDevice ? fs.mkdtempSync(path.join(shm, 'dsx-q-')) : tempDir(t, 'dsx-q-');
  if (crossDevice) t.teardown(() => fs.rmSync(base, { recursive: true, force: true }));
  t.comment(crossDevice ? 'quarantine is on another device (copy + unlink path)' : 'same device (rename path)');
  const q = path.join(base, 'nested/quarantine');
  const c = new FilesystemConnector({ root, quarantineDir: q });
  const before = fs.statSync(path.join(root, 'm/n/o/p/q/deep.bin'));
  t.equal((await c.quarantine('m/n/o/p/q/deep.bin')).status, 'done');
  t.notOk(fs.existsSync(path.join(root, 'm/n/o/p/q/deep.bin')));
  const moved = path.join(q, 'm/n/o/p/q/deep.bin');
  t.equal(fs.readFileSync(moved, 'utf8'), 'contents of m/n/o/p/q/deep.bin\n');
  t.equal(Math.floor(fs.statSync(moved).mtimeMs), Math.floor(before.mtimeMs), 'modification time is kept');
  t.same(fs.readdirSync(path.dirname(moved)), ['deep.bin'], 'no partial copies left behind');
  t.equal((await c.quarantine('m/n/o/p/q/deep.bin')).status, 'already_done');
  t.throws(() => new FilesystemConnector({ root, quarantineDir: 'relative/q' }), { name: 'ConnectorError', kind: 'invalid' }, 'relative quarantine dir');
  t.throws(() => new FilesystemConnector({ root: 'relative' }), { name: 'ConnectorError', kind: 'invalid' }, 'relative root');
  t.throws(() => new FilesystemConnector({ root, quarantineDir: path.dirname(root) }), { name: 'ConnectorError', kind: 'invalid' }, 'quarantine containing the root');
});

t.test('~3,000 files across ~300 directories page quickly and correctly', async (t) => {
  const root = tempDir(t, 'dsx-big-');
  const expected = new Set<string>();
  for (let top = 0; top < 30; top++) {
    for (let sub = 0; sub < 10; sub++) {
      const dir = path.join(root, `top-${top}`, `sub ${sub}`);
      fs.mkdirSync(dir, { recursive: true });
      for (let f = 0; f < 10; f++) {
        const rel = `top-${top}/sub ${sub}/file-${f}.txt`;
        fs.writeFileSync(path.join(root, rel), '');
        expected.add(rel);
      }
    }
    write(root, `top-${top}/readme-${top}.md`);
    expected.add(`top-${top}/readme-${top}.md`);
  }
  const c = new FilesystemConnector({ root });
  const started = performance.now();
  const all = await listAll(t, c, '', 10);
  const elapsed = performance.now() - started;
  t.comment(`${all.length} files in ${Math.ceil(all.length / 10)} pages: ${elapsed.toFixed(0)} ms`);
  t.equal(all.length, expected.size);
  t.equal(new Set(all).size, all.length, 'no duplicates');
  t.same(new Set(all), expected, 'no gaps');
  t.same(all, referenceWalk(root), 'depth-first code-unit order');
  t.ok(elapsed < 15_000, `fast enough (${elapsed.toFixed(0)} ms)`);
  t.same(await listAll(t, c, 'top-7', 10), all.filter((id) => id.startsWith('top-7/')), 'scoped');
});
