/**
 * Quarantine of the filesystem connector on real directories: the quarantine directory cannot be
 * turned against the host (inside the share, reached through a symlink, owned by someone else,
 * writable by others, a symlink planted at a level below it), a second file at the same path never
 * replaces the first copy, and a retried decision never makes a second copy. Also `integration add`,
 * which refuses such a quarantine directory up front.
 */
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { PROJECT_DIR } from '../src/config.ts';
import { FilesystemConnector, quarantineDirProblem } from '../src/connectors/filesystem/index.ts';
import { ConnectorError, type ConnectorErrorKind } from '../src/connectors/types.ts';

/** base/root (the share, with a.txt and docs/x.txt), base/outside (a directory an attacker points at). */
function layout(t: Test) {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-quar-'));
  t.teardown(() => fs.rmSync(base, { recursive: true, force: true }));
  const root = path.join(base, 'root');
  const outside = path.join(base, 'outside');
  fs.mkdirSync(path.join(root, 'docs'), { recursive: true });
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(root, 'a.txt'), 'first a');
  fs.writeFileSync(path.join(root, 'docs/x.txt'), 'x');
  return { base, root, outside, q: path.join(base, 'quarantine') };
}

async function refused(t: Test, p: Promise<unknown>, kind: ConnectorErrorKind, message: RegExp, what: string): Promise<void> {
  try {
    await p;
    t.fail(`${what}: expected ConnectorError(${kind})`);
  } catch (err) {
    t.ok(err instanceof ConnectorError, `${what}: a ConnectorError`);
    t.equal((err as ConnectorError).kind, kind, `${what}: ${kind}`);
    t.match((err as Error).message, message, `${what}: says what to do`);
    t.notOk((err as Error).message.includes('\n'), `${what}: in one line`);
  }
}

/** The name a decision's copy gets (the documented scheme: `<name>.dsx-<16 hex of sha256(key)>`). */
const keyed = (name: string, key: string) => `${name}.dsx-${crypto.createHash('sha256').update(key).digest('hex').slice(0, 16)}`;

t.test('a quarantine directory inside the share, or reached through a symlink into it, is refused and nothing moves', async (t) => {
  const { root, outside, base } = layout(t);
  fs.mkdirSync(path.join(root, '.dsx-quarantine'));
  const inside = new FilesystemConnector({ root, quarantineDir: path.join(root, '.dsx-quarantine') });
  await refused(t, inside.quarantine('a.txt'), 'configuration', /is inside the integration root .*; choose a directory outside the share/, 'a directory inside the root');

  // The probe's attack: a share user makes the quarantine path a symlink to a directory of their choice.
  fs.rmSync(path.join(root, '.dsx-quarantine'), { recursive: true });
  fs.symlinkSync(outside, path.join(root, '.dsx-quarantine'));
  const planted = new FilesystemConnector({ root, quarantineDir: path.join(root, '.dsx-quarantine') });
  await refused(t, planted.quarantine('a.txt'), 'configuration', /outside the share/, 'a symlink inside the root to a directory outside');

  // A path outside the share whose real path is inside it.
  fs.mkdirSync(path.join(root, 'inner-q'));
  fs.symlinkSync(path.join(root, 'inner-q'), path.join(base, 'q-link'));
  const through = new FilesystemConnector({ root, quarantineDir: path.join(base, 'q-link') });
  await refused(t, through.quarantine('a.txt'), 'configuration', /outside the share/, 'a symlink outside the root into it');

  t.same(fs.readdirSync(outside), [], 'nothing was written where the symlink pointed');
  t.same(fs.readdirSync(path.join(root, 'inner-q')), [], 'nor into the share');
  t.equal(fs.readFileSync(path.join(root, 'a.txt'), 'utf8'), 'first a', 'the file stays in place');
});

t.test('a quarantine directory not owned by the service user, or writable by group or others, is refused', async (t) => {
  const { root, q } = layout(t);
  fs.mkdirSync(q, { mode: 0o700 });
  const c = new FilesystemConnector({ root, quarantineDir: q });
  fs.chmodSync(q, 0o777);
  await refused(t, c.quarantine('a.txt'), 'configuration', /writable by group or others \(mode 0777\); run chmod go-w/, 'mode 0777');
  fs.chmodSync(q, 0o770);
  await refused(t, c.quarantine('a.txt'), 'configuration', /writable by group or others \(mode 0770\)/, 'mode 0770');
  fs.chmodSync(q, 0o700);
  if (process.geteuid?.() === 0) {
    fs.chownSync(q, 65534, 65534);
    await refused(t, c.quarantine('a.txt'), 'configuration', /owned by uid 65534, not by the service user \(uid 0\); chown it/, 'owned by nobody');
    fs.chownSync(q, 0, 0);
  } else {
    t.comment('not root: ownership by another user is covered by the mode checks only');
  }
  t.equal(fs.readFileSync(path.join(root, 'a.txt'), 'utf8'), 'first a', 'nothing moved while refused');
  t.equal((await c.quarantine('a.txt')).status, 'done', 'once fixed, the same connector quarantines');

  t.match(quarantineDirProblem(root, path.join(root, 'q')), /inside the integration root/, 'the check integration add uses');
  t.match(quarantineDirProblem(root, 'relative/q'), /must be an absolute path/);
  fs.chmodSync(q, 0o777);
  t.match(quarantineDirProblem(root, q), /writable by group or others/);
  t.equal(quarantineDirProblem(root, path.join(q, 'not-yet-created')), null, 'a directory that does not exist yet is fine');
});

t.test('a symlinked directory planted at any level below the quarantine directory is refused, not followed', async (t) => {
  const { root, outside, q } = layout(t);
  const c = new FilesystemConnector({ root, quarantineDir: q });
  t.equal((await c.quarantine('a.txt')).status, 'done', 'the quarantine directory exists and works');
  fs.symlinkSync(outside, path.join(q, 'docs'));
  await refused(t, c.quarantine('docs/x.txt'), 'escape', /quarantine path .*\/docs is a symbolic link; refusing to follow it/, 'a symlink at the first level');
  fs.rmSync(path.join(q, 'docs'));
  fs.mkdirSync(path.join(root, 'm/n'), { recursive: true });
  fs.writeFileSync(path.join(root, 'm/n/y.txt'), 'y');
  fs.mkdirSync(path.join(q, 'm'), { mode: 0o700 });
  fs.symlinkSync(outside, path.join(q, 'm/n'));
  await refused(t, c.quarantine('m/n/y.txt'), 'escape', /is a symbolic link/, 'a symlink at a deeper level');
  fs.rmSync(path.join(q, 'm/n'));
  fs.writeFileSync(path.join(q, 'm/n'), 'a file where a directory belongs');
  await refused(t, c.quarantine('m/n/y.txt'), 'invalid', /blocked by an existing entry/, 'a file blocking a level');
  t.same(fs.readdirSync(outside), [], 'nothing was written through the symlinks');
  t.equal(fs.readFileSync(path.join(root, 'docs/x.txt'), 'utf8'), 'x', 'the sources stay in place');
  t.equal(fs.readFileSync(path.join(root, 'm/n/y.txt'), 'utf8'), 'y');
});

t.test('a second file at the same path never replaces the first quarantined copy', async (t) => {
  const { root, q } = layout(t);
  const c = new FilesystemConnector({ root, quarantineDir: q });
  const first = await c.quarantine('a.txt', { key: 'rem:1' });
  t.same(first, { status: 'done', detail: `moved to ${q}/${keyed('a.txt', 'rem:1')}` }, 'each decision has its own name, and the detail says it');
  fs.writeFileSync(path.join(root, 'a.txt'), 'second a');
  const second = await c.quarantine('a.txt', { key: 'rem:2' });
  t.same(second, { status: 'done', detail: `moved to ${q}/${keyed('a.txt', 'rem:2')}` });
  t.equal(fs.readFileSync(path.join(q, keyed('a.txt', 'rem:1')), 'utf8'), 'first a', 'the first copy is intact');
  t.equal(fs.readFileSync(path.join(q, keyed('a.txt', 'rem:2')), 'utf8'), 'second a');

  t.same(await c.quarantine('a.txt', { key: 'rem:2' }), { status: 'already_done', detail: `already in quarantine at ${q}/${keyed('a.txt', 'rem:2')}` }, 'a retry of a decision is already done');
  fs.writeFileSync(path.join(root, 'a.txt'), 'third a');
  const stale = await c.quarantine('a.txt', { key: 'rem:1' });
  t.equal(stale.status, 'already_done', 'an old decision does not move the new file');
  t.match(stale.detail, /the file now at "a.txt" is a different one and was left in place/);
  t.equal(fs.readFileSync(path.join(root, 'a.txt'), 'utf8'), 'third a');
  t.equal(fs.readdirSync(q).length, 2, 'no second copy of either decision');

  // Without a key: numbered names, still never replacing.
  t.same(await c.quarantine('a.txt'), { status: 'done', detail: `moved to ${q}/a.txt` });
  fs.writeFileSync(path.join(root, 'a.txt'), 'fourth a');
  t.same(await c.quarantine('a.txt'), { status: 'done', detail: `moved to ${q}/a.txt.dsx-2` });
  t.equal(fs.readFileSync(path.join(q, 'a.txt'), 'utf8'), 'third a');
  t.equal(fs.readFileSync(path.join(q, 'a.txt.dsx-2'), 'utf8'), 'fourth a');
});

t.test('a retry after a crash in the middle of a move completes it without a second copy', async (t) => {
  const { root, q } = layout(t);
  const c = new FilesystemConnector({ root, quarantineDir: q });
  t.equal((await c.quarantine('docs/x.txt', { key: 'warm-up' })).status, 'done'); // creates q/docs
  const src = path.join(root, 'a.txt');

  // Crash after link(2), before the source was unlinked: the copy is the source itself.
  fs.linkSync(src, path.join(q, keyed('a.txt', 'k1')));
  t.same(await c.quarantine('a.txt', { key: 'k1' }), { status: 'done', detail: `moved to ${q}/${keyed('a.txt', 'k1')} (completing an interrupted move)` });
  t.notOk(fs.existsSync(src), 'the source is removed');

  // Crash after the cross-filesystem copy was put in place, before the source was unlinked.
  fs.writeFileSync(src, 'copied a');
  fs.writeFileSync(path.join(q, keyed('a.txt', 'k2')), 'copied a');
  t.equal((await c.quarantine('a.txt', { key: 'k2' })).status, 'done');
  t.notOk(fs.existsSync(src));

  // Crash after the move, before the ledger committed: the retry finds its copy.
  fs.writeFileSync(src, 'moved a');
  t.equal((await c.quarantine('a.txt', { key: 'k3' })).status, 'done');
  t.equal((await c.quarantine('a.txt', { key: 'k3' })).status, 'already_done');
  t.same(fs.readdirSync(q).sort(), ['docs', keyed('a.txt', 'k1'), keyed('a.txt', 'k2'), keyed('a.txt', 'k3')].sort(), 'one copy per decision, nothing else');
});

t.test('across filesystems a collision keeps both copies and leaves no partial file', async (t) => {
  const shm = '/dev/shm';
  const { root } = layout(t);
  if (!fs.existsSync(shm) || fs.statSync(shm).dev === fs.statSync(root).dev) {
    t.comment('no second filesystem here: the copy path is the same as in the test above');
    return;
  }
  const base = fs.mkdtempSync(path.join(shm, 'dsx-q-'));
  t.teardown(() => fs.rmSync(base, { recursive: true, force: true }));
  const q = path.join(base, 'q');
  const c = new FilesystemConnector({ root, quarantineDir: q });
  fs.utimesSync(path.join(root, 'a.txt'), 1_000_000, 2_000_000);
  t.same(await c.quarantine('a.txt', { key: 'x1' }), { status: 'done', detail: `moved to ${q}/${keyed('a.txt', 'x1')} (copied)` });
  fs.writeFileSync(path.join(root, 'a.txt'), 'second a');
  t.equal((await c.quarantine('a.txt', { key: 'x2' })).status, 'done');
  t.equal(fs.readFileSync(path.join(q, keyed('a.txt', 'x1')), 'utf8'), 'first a');
  t.equal(fs.readFileSync(path.join(q, keyed('a.txt', 'x2')), 'utf8'), 'second a');
  t.equal(fs.statSync(path.join(q, keyed('a.txt', 'x1'))).mtimeMs, 2_000_000_000, 'the modification time is kept');
  t.same(fs.readdirSync(q).filter((n) => n.includes('partial')), [], 'no partial copies left behind');
});

t.test('a file with another name in the share is copied, so that name cannot rewrite the evidence', async (t) => {
  const { root, q } = layout(t);
  fs.linkSync(path.join(root, 'a.txt'), path.join(root, 'docs/alias.txt'));
  const c = new FilesystemConnector({ root, quarantineDir: q });
  t.same(await c.quarantine('a.txt', { key: 'k' }), { status: 'done', detail: `moved to ${q}/${keyed('a.txt', 'k')} (copied)` });
  fs.writeFileSync(path.join(root, 'docs/alias.txt'), 'rewritten through the other name');
  t.equal(fs.readFileSync(path.join(q, keyed('a.txt', 'k')), 'utf8'), 'first a', 'the quarantined bytes stay as scanned');
  t.notOk(fs.existsSync(path.join(root, 'a.txt')), 'the quarantined name is gone from the share');
});

t.test('a name too long for the suffix is shortened at a character boundary', async (t) => {
  const { root, q } = layout(t);
  const name = `${'é'.repeat(120)}.com`; // 244 bytes
  fs.writeFileSync(path.join(root, name), 'long');
  const c = new FilesystemConnector({ root, quarantineDir: q });
  const r = await c.quarantine(name, { key: 'long' });
  t.equal(r.status, 'done');
  const [stored] = fs.readdirSync(q);
  t.ok(Buffer.byteLength(stored!) <= 255, `${Buffer.byteLength(stored!)} bytes`);
  t.notOk(stored!.includes('\uFFFD'), 'still valid UTF-8');
  t.ok(stored!.endsWith(keyed('', 'long')), 'the decision suffix is kept whole');
  t.equal(r.detail, `moved to ${q}/${stored}`);
  t.equal(fs.readFileSync(path.join(q, stored!), 'utf8'), 'long');
});

t.test('integration add refuses a quarantine directory inside the share with a one-line message', async (t) => {
  const { root } = layout(t);
  // Refused before any database is touched: an unreachable one makes a mistake here fail fast.
  const env = { ...process.env, DATABASE_URL: 'postgres://127.0.0.1:1/none', DSX_LOG_LEVEL: 'silent' };
  const bin = path.join(PROJECT_DIR, 'bin', 'dsx-connect.js');
  for (const args of [
    ['--quarantine', path.join(root, '.dsx-quarantine')],
    ['--settings', JSON.stringify({ quarantine_dir: path.join(root, 'q') })],
  ]) {
    const r = spawnSync(process.execPath, [bin, 'integration', 'add', '--name', 'share', '--kind', 'filesystem', '--root', root, ...args], { env, encoding: 'utf8' });
    t.equal(r.status, 1, `${args[0]}: refused (exit 1)`);
    t.match(r.stderr.trim(), /^[^\n]*quarantine directory .* is inside the integration root .*; choose a directory outside the share[^\n]*$/, `${args[0]}: says what to do, in one line`);
  }
});
