/**
 * Nothing is skipped silently: every entry enumeration meets and does not return as an object is in
 * `Page.skipped` with its reason, exactly once over a whole enumeration, across page boundaries and
 * resumes from a cursor. On a real tree: symlinks to a file and to a directory, a FIFO, a Unix socket
 * (a listening server's), and a directory the connector cannot open. Root ignores `chmod 000`, so the
 * unreadable directory is listed by a child process running as `nobody` (uid 65534), for which the
 * kernel really refuses to open it (EACCES).
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { FilesystemConnector, MIN_SKIPPED_PER_PAGE } from '../src/connectors/filesystem/index.ts';
import type { Page, SkippedEntry } from '../src/connectors/types.ts';

interface Listing {
  objects: string[];
  skipped: SkippedEntry[];
  pages: Page[];
}

/** The whole enumeration of `scope`, page by page, each page resumed from the previous cursor. */
async function listAll(c: FilesystemConnector, pageSize: number, scope = ''): Promise<Listing> {
  const out: Listing = { objects: [], skipped: [], pages: [] };
  let cursor: string | null = null;
  do {
    const page: Page = await c.listPage(scope, cursor, pageSize);
    out.pages.push(page);
    out.objects.push(...page.objects.map((o) => o.identity));
    out.skipped.push(...(page.skipped ?? []));
    cursor = page.nextCursor;
  } while (cursor !== null);
  return out;
}

/** A share anyone may read, with one entry of each kind that is not an object; the socket is served while the test runs. */
async function oddTree(t: Test): Promise<string> {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-skip-'));
  t.teardown(() => {
    fs.chmodSync(path.join(base, 'root', 'locked'), 0o755);
    fs.rmSync(base, { recursive: true, force: true });
  });
  fs.chmodSync(base, 0o755);
  const root = path.join(base, 'root');
  fs.mkdirSync(path.join(root, 'sub'), { recursive: true, mode: 0o755 });
  fs.mkdirSync(path.join(root, 'locked'), { mode: 0o755 });
  for (const rel of ['a.txt', 'locked/hidden.txt', 'sub/f.txt', 'z.txt']) fs.writeFileSync(path.join(root, rel), rel, { mode: 0o644 });
  fs.symlinkSync('a.txt', path.join(root, 'b-link'));
  fs.symlinkSync('sub', path.join(root, 'c-dirlink'));
  execFileSync('mkfifo', [path.join(root, 'd-fifo')]);
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(path.join(root, 'e.sock'), resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  fs.symlinkSync('../a.txt', path.join(root, 'sub/g-link'));
  return root;
}

const EXPECTED_SKIPPED: SkippedEntry[] = [
  { identity: 'b-link', reason: 'symlink' },
  { identity: 'c-dirlink', reason: 'symlink' },
  { identity: 'd-fifo', reason: 'special_file', detail: 'fifo' },
  { identity: 'e.sock', reason: 'special_file', detail: 'socket' },
  { identity: 'sub/g-link', reason: 'symlink' },
];

t.test('symlinks, a FIFO and a socket are each reported once with their reason, whatever the page size', async (t) => {
  const root = await oddTree(t);
  const c = new FilesystemConnector({ root });
  for (const size of [1, 2, 3, 100]) {
    const all = await listAll(c, size);
    t.same(all.objects, ['a.txt', 'locked/hidden.txt', 'sub/f.txt', 'z.txt'], `page size ${size}: the objects`);
    t.same(all.skipped, EXPECTED_SKIPPED, `page size ${size}: every other entry exactly once, in walk order`);
  }
  const [first, second] = (await listAll(c, 1)).pages;
  t.same(first!.skipped, [], 'a page ending at its last object leaves what follows it to the next page');
  t.same(second!.skipped!.map((s) => s.identity), ['b-link', 'c-dirlink', 'd-fifo', 'e.sock'], 'which reports it');
  const sub = await listAll(c, 100, 'sub');
  t.same(sub.skipped, [{ identity: 'sub/g-link', reason: 'symlink' }], 'a scope reports only its own entries');
});

t.test('a directory the connector cannot open is reported as unreadable with its errno, once (listed as nobody)', async (t) => {
  const root = await oddTree(t);
  fs.chmodSync(path.join(root, 'locked'), 0o000);
  const entry = new URL('../src/connectors/filesystem/index.ts', import.meta.url).href;
  const script = `
    const { FilesystemConnector } = await import(process.env.DSX_T_MODULE);
    const c = new FilesystemConnector({ root: process.env.DSX_T_ROOT });
    const out = {};
    for (const size of [1, 100]) {
      const all = { objects: [], skipped: [] };
      let cursor = null;
      do {
        const page = await c.listPage('', cursor, size);
        all.objects.push(...page.objects.map((o) => o.identity));
        all.skipped.push(...page.skipped);
        cursor = page.nextCursor;
      } while (cursor !== null);
      out[size] = all;
    }
    process.stdout.write(JSON.stringify(out));
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    uid: 65534,
    gid: 65534,
    env: { PATH: process.env.PATH ?? '', DSX_T_MODULE: entry, DSX_T_ROOT: root },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d));
  child.stderr.on('data', (d: Buffer) => (stderr += d));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  t.equal(code, 0, `the listing as nobody ran: ${stderr.trim()}`);
  const out = JSON.parse(stdout) as Record<string, { objects: string[]; skipped: SkippedEntry[] }>;
  for (const size of ['1', '100']) {
    t.same(out[size]!.objects, ['a.txt', 'sub/f.txt', 'z.txt'], `page size ${size}: the locked directory's file is not listed`);
    t.same(
      out[size]!.skipped,
      [...EXPECTED_SKIPPED.slice(0, 4), { identity: 'locked', reason: 'unreadable_directory', detail: 'EACCES' }, EXPECTED_SKIPPED[4]],
      `page size ${size}: and the directory is reported, once`,
    );
  }
});

t.test('a page full of skipped entries ends early and the next page resumes after the last one', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-skip-many-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  const links = MIN_SKIPPED_PER_PAGE + 100;
  fs.writeFileSync(path.join(root, 'a-first.txt'), '');
  fs.mkdirSync(path.join(root, 'links'));
  for (let i = 0; i < links; i++) fs.symlinkSync('../a-first.txt', path.join(root, 'links', `l-${String(i).padStart(5, '0')}`));
  fs.writeFileSync(path.join(root, 'z-last.txt'), '');
  const c = new FilesystemConnector({ root });
  const all = await listAll(c, 10);
  t.same(all.objects, ['a-first.txt', 'z-last.txt']);
  t.equal(all.skipped.length, links, 'every link reported');
  t.equal(new Set(all.skipped.map((s) => s.identity)).size, links, 'each once');
  t.ok(all.pages.every((p) => p.skipped!.length <= MIN_SKIPPED_PER_PAGE), `at most ${MIN_SKIPPED_PER_PAGE} per page`);
  const capped = all.pages.find((p) => p.skipped!.length === MIN_SKIPPED_PER_PAGE)!;
  t.equal(capped.nextCursor, JSON.stringify({ after: capped.skipped!.at(-1)!.identity }), 'the capped page resumes after its last skipped entry');
});
