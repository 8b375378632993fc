/**
 * Nothing is skipped silently, through the whole product: a full scan of a real tree with symlinks, a
 * FIFO and a directory the enumerating worker cannot open counts every skipped entry by reason, lists
 * each one in dsx.skipped_entries (readable by viewers, over psql, the CLI and GraphQL), and reports the
 * unreadable directory as a warning in `scan status`. Root ignores `chmod 000`, so the enumerate role
 * runs as a real `dsx-connect worker` process under uid 65534 (nobody), for which the kernel refuses
 * to open the directory (EACCES); scanning and finalization run in this process. A page delivered
 * twice records its skipped entries once.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { fullScanRecordPage } from '../src/db/sql/full-scans.ts';
import { createTestDatabase } from './helpers/db.ts';
import { apiServer, operation, token } from './helpers/graphql.ts';
import { emulator, fsScope, getScan, queuedJobs, Stepper, testConfig, waitForScan, workers } from './helpers/pipeline.ts';
import { MAIN, productEnv, start } from './helpers/processes.ts';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `dsx-connect ...args` to completion without blocking this process (its workers keep running). */
function cli(env: NodeJS.ProcessEnv, ...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, ...args], { env: productEnv({ DSX_LOG_LEVEL: 'warn', ...env }) });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout: stdout.trim(), stderr: stderr.trim() }));
  });
}

/**
 * A share anyone may read: three files, two symlinks, a FIFO, a symlink the scope excludes, and a
 * directory `locked` with a file in it (made unreadable by the caller when it wants).
 */
function oddTree(t: Test): string {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-skipped-'));
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
  execFileSync('mkfifo', [path.join(root, 'd-fifo')]);
  fs.symlinkSync('a.txt', path.join(root, 'e-excluded.tmp'));
  fs.symlinkSync('../a.txt', path.join(root, 'sub/g-link'));
  return root;
}

const EXCLUDE = ['**/*.tmp'];

/**
 * The environment of a product process run as nobody. tap hooks every child process it spawns (it
 * wraps child_process) to record what ran in <cwd>/.tap/processinfo when it exits; as nobody that
 * directory of the worktree is not writable, so the record goes to a directory of its own.
 */
function nobodyEnv(t: Test, extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const info = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-tapinfo-'));
  fs.chmodSync(info, 0o777);
  t.teardown(() => fs.rmSync(info, { recursive: true, force: true }));
  return { ...productEnv(extra), _TAPJS_PROCESSINFO_CWD_: info };
}

t.test('a scan of a tree with symlinks, a FIFO and an unreadable directory counts, lists and warns about each skipped entry', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const root = oddTree(t);
  fs.chmodSync(path.join(root, 'locked'), 0o000);
  const scope = await fsScope(db.pool, { dir: root, name: 'share', exclude: EXCLUDE });
  await workers(t, db.pool, { dsxaUrl: emu.url, roles: ['scan', 'finalize', 'remediate', 'notify'] });
  // Pages of two objects: the skipped entries arrive on several pages.
  const enumerator = start(t, process.execPath, [MAIN, 'worker', '--roles', 'enumerate', '--concurrency', '2'], {
    uid: 65534,
    gid: 65534,
    env: nobodyEnv(t, { DATABASE_URL: db.url, DSX_LOG_LEVEL: 'warn', DSX_PAGE_SIZE: '2' }),
  });

  const { rows: started } = await db.pool.query<{ id: string }>(`select (dsx.start_full_scan($1, 'test')).full_scan_id as id`, [scope.id]);
  const id = Number(started[0]!.id);
  const scan = await waitForScan(db.pool, id);
  // Stopped as an operator would (the test's teardown kills it only if the test fails before this).
  enumerator.proc.kill('SIGTERM');
  t.match(await enumerator.exited(20_000), { code: 0 }, 'the enumerating worker stopped cleanly');
  t.equal(enumerator.stderr(), '', 'and said nothing on stderr');
  t.match(scan, { status: 'completed', discovered: 3, finalized: 3, clean_count: 3 }, 'the three readable files are scanned; the locked one is never discovered');
  t.ok(scan.pages >= 2, `${scan.pages} pages`);

  const { rows: entries } = await db.pool.query('select object_identity, reason, detail from dsx.skipped_entries where full_scan_id = $1 order by id', [id]);
  t.same(
    entries,
    [
      { object_identity: 'b-link', reason: 'symlink', detail: null },
      { object_identity: 'd-fifo', reason: 'special_file', detail: 'fifo' },
      { object_identity: 'locked', reason: 'unreadable_directory', detail: 'EACCES' },
      { object_identity: 'sub/g-link', reason: 'symlink', detail: null },
    ],
    'one row per skipped entry in walk order; the symlink the scope excludes is not one',
  );
  const { rows: progress } = await db.pool.query(
    'select skipped::int, skipped_reasons, enumeration_warning, percent_finalized::float8 from dsx.full_scan_progress where id = $1',
    [id],
  );
  t.same(progress[0], {
    skipped: 4,
    skipped_reasons: { symlink: 2, special_file: 1, unreadable_directory: 1, directory_marker: 0, internal: 0 },
    enumeration_warning: '1 directory could not be read: "locked" (EACCES) (not scanned)',
    percent_finalized: 100,
  });

  // The psql recipe, as a viewer.
  const viewer = await db.pool.connect();
  try {
    await viewer.query('begin');
    await viewer.query('set local role dsx_viewer');
    const { rows } = await viewer.query(
      `select reason, object_identity, detail from dsx.skipped_entries where full_scan_id = $1 and reason = 'unreadable_directory' order by id`,
      [id],
    );
    t.same(rows, [{ reason: 'unreadable_directory', object_identity: 'locked', detail: 'EACCES' }], 'viewers read the table');
  } finally {
    await viewer.query('rollback');
    viewer.release();
  }

  const env = { DATABASE_URL: db.url };
  // Independent reads: run at once.
  const [status, jsonRun, listed, onlyDirsRun, badReason, unknown] = await Promise.all([
    cli(env, 'scan', 'status', String(id)),
    cli(env, 'scan', 'status', String(id), '--json'),
    cli(env, 'scan', 'skipped', String(id)),
    cli(env, 'scan', 'skipped', String(id), '--reason', 'unreadable_directory', '--json'),
    cli(env, 'scan', 'skipped', String(id), '--reason', 'broken'),
    cli(env, 'scan', 'skipped', '424242'),
  ]);
  t.equal(status.code, 0, status.stderr);
  const lines = status.stdout.split('\n');
  t.equal(lines[0], `full scan ${id} of scope share: completed`);
  t.match(lines[1], /^ {2}finalized 3\/3(, [\d.]+ objects\/s)?$/);
  t.equal(lines[2], '  outcomes: clean=3');
  t.equal(lines[3], `  skipped 4 (not scanned): symlink=2 special_file=1 unreadable_directory=1 (list them: dsx-connect scan skipped ${id})`);
  t.equal(lines[4], '  warning: 1 directory could not be read: "locked" (EACCES) (not scanned)');

  const json = JSON.parse(jsonRun.stdout);
  t.match(json, {
    status: 'completed',
    skipped: 4,
    skipped_reasons: { symlink: 2, special_file: 1, unreadable_directory: 1, directory_marker: 0, internal: 0 },
    enumeration_warning: '1 directory could not be read: "locked" (EACCES) (not scanned)',
  });

  t.equal(listed.code, 0, listed.stderr);
  t.equal(listed.stdout, ['symlink\t"b-link"', 'special_file\t"d-fifo"\tfifo', 'unreadable_directory\t"locked"\tEACCES', 'symlink\t"sub/g-link"'].join('\n'));
  const onlyDirs = JSON.parse(onlyDirsRun.stdout);
  t.match(onlyDirs, [{ identity: 'locked', reason: 'unreadable_directory', detail: 'EACCES' }]);
  t.equal(onlyDirs.length, 1);
  t.equal(badReason.code, 1);
  t.match(badReason.stderr, /^error: --reason must be one of symlink, special_file, unreadable_directory, directory_marker, internal \(got "broken"\)$/);
  t.equal(unknown.stderr, 'error: unknown full scan id 424242');

  // GraphQL, as a viewer: the progress row, the table, and the subscription's event.
  const api = await apiServer(t, db.url);
  const viewerToken = await token('viewer');
  const q = await api.query(operation('full-scan-status'), { id: String(id) }, viewerToken);
  t.notOk(q.errors, JSON.stringify(q.errors));
  t.match(q.data.fullScanProgressByRowId, {
    skipped: '4',
    skippedReasons: { symlink: 2, special_file: 1, unreadable_directory: 1 },
    enumerationWarning: '1 directory could not be read: "locked" (EACCES) (not scanned)',
  });
  const list = await api.query(
    `query ($id: BigInt!) { allSkippedEntries(condition: {fullScanId: $id, reason: "symlink"}, orderBy: [PRIMARY_KEY_ASC]) { totalCount nodes { objectIdentity reason pageNo } } }`,
    { id: String(id) },
    viewerToken,
  );
  t.notOk(list.errors, JSON.stringify(list.errors));
  t.equal(list.data.allSkippedEntries.totalCount, 2);
  t.same(list.data.allSkippedEntries.nodes.map((n: { objectIdentity: string }) => n.objectIdentity), ['b-link', 'sub/g-link']);
  const events = await api.subscribe(operation('full-scan-progress'), { fullScanId: id }, viewerToken).done;
  t.match(events.at(-1)!.data.fullScanProgress, {
    status: 'completed',
    skipped: 4,
    skippedReasons: { unreadable_directory: 1 },
    enumerationWarning: /^1 directory could not be read/,
  });
  const overApi = await cli({ DSX_API_URL: `${api.url}/graphql`, DSX_API_TOKEN: viewerToken }, 'scan', 'status', String(id), '--json');
  t.same(JSON.parse(overApi.stdout), json, 'scan status --json prints the same over the API');
});

t.test('a page delivered twice records its skipped entries once, and a stale redelivery records nothing', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const root = oddTree(t);
  const scope = await fsScope(db.pool, { dir: root, exclude: EXCLUDE });
  const stepper = new Stepper(db.pool, { dsxaUrl: emu.url, config: testConfig({ pageSize: 2 }) });
  const { rows: started } = await db.pool.query<{ id: string }>(`select (dsx.start_full_scan($1, 'test')).full_scan_id as id`, [scope.id]);
  const id = Number(started[0]!.id);
  await stepper.drain('full-scan-scope');
  let pages = 0;
  for (let page = await queuedJobs(db.pool, 'enumerate-scope-page'); page.length > 0; page = await queuedJobs(db.pool, 'enumerate-scope-page')) {
    // Delivered twice: the second run finds the page recorded and changes nothing.
    await stepper.run(page[0]!);
    await stepper.run(page[0]!);
    await stepper.complete(page[0]!);
    pages++;
  }
  const expected = [
    { object_identity: 'b-link', reason: 'symlink' },
    { object_identity: 'd-fifo', reason: 'special_file' },
    { object_identity: 'sub/g-link', reason: 'symlink' },
  ];
  const rows = async () => (await db.pool.query('select object_identity, reason from dsx.skipped_entries where full_scan_id = $1 order by id', [id])).rows;
  t.same(await rows(), expected, `${pages} pages, each run twice: every entry once`);
  // A root sees into `locked`: its file is an object here.
  t.match(await getScan(db.pool, id), { discovered: 4, enumeration_exhausted: true });

  // Page 0 again, long after later pages were recorded (a delayed redelivery): refused as a duplicate.
  const again = await fullScanRecordPage(db.pool, {
    id,
    pageNo: 0,
    objects: [],
    nextCursor: null,
    parentJobId: '00000000-0000-4000-8000-000000000000',
    scanMaxAttempts: 3,
    skipped: [{ identity: 'b-link', reason: 'symlink' }, { identity: 'new-link', reason: 'symlink' }],
  });
  t.equal(again.status, 'duplicate');
  t.same(await rows(), expected, 'nothing recorded');
  const { rows: counts } = await db.pool.query('select skipped::int, skipped_reasons from dsx.full_scan_progress where id = $1', [id]);
  t.same(counts[0], { skipped: 3, skipped_reasons: { symlink: 2, special_file: 1, unreadable_directory: 0, directory_marker: 0, internal: 0 } }, 'the counts equal the rows');
  await stepper.runAll();
  t.match(await getScan(db.pool, id), { status: 'completed', finalized: 4 });
});
