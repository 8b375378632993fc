/**
 * Remediation by quarantine: moves a regular file from the root into the quarantine directory without
 * ever replacing anything there, and says where it went.
 *
 * - The destination is `<quarantine>/<identity's directories>/<name>`; a decision with a key (the
 *   side-effect ledger's) gets `<name>.dsx-<16 hex of sha256(key)>`, so every decision has its own copy
 *   and a retry finds its own. Without a key the first copy is `<name>`, later ones `<name>.dsx-2`, ...
 * - The move is `link` (fails with EEXIST, never replaces) and then `unlink` of the source. Where a
 *   hard link is impossible (another filesystem: EXDEV; fs.protected_hardlinks for a file the service
 *   does not own: EPERM) or unwanted (the file has other names in the share, through which it could
 *   be rewritten later) the open file itself is copied to a temporary name with COPYFILE_EXCL,
 *   compared byte for byte, and linked into place the same way; the source is removed only then.
 * - Both names are looked up in held directories (resolve.ts, quarantine-area.ts), and the file moved
 *   is checked by inode against the one opened and inspected, so a rename race can neither pull a file
 *   from outside the root nor push one outside the quarantine directory.
 * - Retries: a copy already at this decision's name that is the source itself (a crash between link
 *   and unlink) or has its exact bytes (a crash after copying) completes the move; any other copy
 *   there means this decision is done, and a different file now at the path is left for its own scan.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { Stats } from 'node:fs';
import type fs from 'node:fs/promises';
import { nameFromBytes } from '../identity.ts';
import { ConnectorError, type ActionResult } from '../types.ts';
import { copyHandleTo, linkAt, lstatAt, lutimesAt, openFileAt, unlinkAt, type HeldDir } from './descriptors.ts';
import { classifyDestination, errno } from './errors.ts';
import { componentsOf } from './paths.ts';
import { enterLevels, type QuarantineArea } from './quarantine-area.ts';
import { objectIdentity, openLocated, withEntry, withRoot } from './read.ts';
import type { Located } from './resolve.ts';

/** Linux's NAME_MAX: a suffixed name is shortened (at a character boundary) to fit. */
const NAME_MAX = 255;
/** link(2) errors after which the file is copied instead. */
const NO_HARD_LINK = new Set(['EXDEV', 'EPERM', 'EMLINK', 'ENOTSUP', 'EOPNOTSUPP']);
/** Suffixes tried for a decision without a key before falling back to a random one. */
const NUMBERED_NAMES = 99;

/** `Connector.quarantine` for one integration root and quarantine area. */
export async function quarantineObject(
  rootText: string,
  rootBytes: Buffer,
  area: QuarantineArea | null,
  identity: string,
  key: string | undefined,
): Promise<ActionResult> {
  const id = objectIdentity(identity);
  if (area === null) {
    throw new ConnectorError('configuration', 'this integration has no quarantine directory; set quarantine_dir to a directory outside the share');
  }
  const parts = componentsOf(id);
  const dirs = parts.slice(0, -1);
  const names = [...candidateNames(parts[parts.length - 1], key)];
  const where = (name: Buffer) => [area.path, ...dirs.map((d) => nameFromBytes(d)), nameFromBytes(name)].join('/');

  return withRoot(rootText, rootBytes, async (root) => {
    const q = await area.open(root);
    try {
      return await withEntry(root, id, async (entry) => {
        if (entry === null) return findEarlierCopy(q, area.path, dirs, names[0], where(names[0]), id);
        const { fh, st } = await openLocated(entry, id);
        try {
          const level = (await enterLevels(q, area.path, dirs, true))!;
          try {
            return await moveInto({ entry, fh, st, id }, level, names, where, key !== undefined);
          } finally {
            await level.close().catch(() => {});
          }
        } finally {
          await fh.close().catch(() => {});
        }
      });
    } finally {
      await q.close().catch(() => {});
    }
  });
}

/** The source of a move: where it is, the open file, and what fstat said of it. */
interface Source {
  entry: Located;
  fh: fs.FileHandle;
  st: Stats;
  id: string;
}

/** The source is gone: done when this decision's copy is in quarantine, else not_found. */
async function findEarlierCopy(q: HeldDir, qText: string, dirs: Buffer[], name: Buffer, dest: string, id: string): Promise<ActionResult> {
  const missing = new ConnectorError('not_found', `${JSON.stringify(id)} does not exist and is not in quarantine`);
  const level = await enterLevels(q, qText, dirs, false);
  if (level === null) throw missing;
  try {
    await lstatAt(level, name);
  } catch (err) {
    if (errno(err) === 'ENOENT') throw missing;
    throw classifyDestination(err, dest);
  } finally {
    await level.close().catch(() => {});
  }
  return { status: 'already_done', detail: `already in quarantine at ${dest}` };
}

async function moveInto(src: Source, level: HeldDir, names: Buffer[], where: (name: Buffer) => string, keyed: boolean): Promise<ActionResult> {
  const shown = JSON.stringify(src.id);
  for (const name of names) {
    const dest = where(name);
    const placed = await placeNoReplace(src, level, name, dest);
    if (placed !== 'exists') {
      const left = await unlinkSource(src);
      return { status: 'done', detail: `moved to ${dest}${placed === 'copied' ? ' (copied)' : ''}${left}` };
    }
    if (await isCopyOf(src, level, name)) {
      const left = await unlinkSource(src);
      return { status: 'done', detail: `moved to ${dest} (completing an interrupted move)${left}` };
    }
    if (keyed) {
      return { status: 'already_done', detail: `this decision's copy is already in quarantine at ${dest}; the file now at ${shown} is a different one and was left in place` };
    }
  }
  throw new ConnectorError('transient', `no free name for ${shown} in quarantine after ${names.length} tries; retry`);
}

/** Gives the source file the name `name` in `level` without replacing anything: link, or copy + link. */
async function placeNoReplace(src: Source, level: HeldDir, name: Buffer, dest: string): Promise<'linked' | 'copied' | 'exists'> {
  // A file with other names could still be rewritten through them after the move: the evidence gets
  // an inode of its own.
  if (src.st.nlink > 1) return copyNoReplace(src, level, name, dest);
  try {
    await linkAt(src.entry.parent, src.entry.name, level, name);
  } catch (err) {
    const code = errno(err) ?? '';
    if (code === 'EEXIST') return 'exists';
    if (code === 'ENOENT') throw new ConnectorError('transient', `${JSON.stringify(src.id)} vanished while being quarantined; retry`, { cause: err });
    if (NO_HARD_LINK.has(code)) return copyNoReplace(src, level, name, dest);
    throw classifyDestination(err, dest);
  }
  // link(2) took whatever the source name held at that instant: it must be the file inspected.
  const linked = await lstatAt(level, name);
  if (linked.ino !== src.st.ino || linked.dev !== src.st.dev) {
    await unlinkAt(level, name).catch(() => {});
    throw new ConnectorError('transient', `${JSON.stringify(src.id)} changed while being quarantined; retry`);
  }
  return 'linked';
}

/** Copies the open source file to a temporary name, verifies it, and links it into place. */
async function copyNoReplace(src: Source, level: HeldDir, name: Buffer, dest: string): Promise<'copied' | 'exists'> {
  const tmp = Buffer.from(`.dsx-partial-${randomUUID()}`);
  try {
    try {
      await copyHandleTo(src.fh, level, tmp);
      await lutimesAt(level, tmp, src.st.atimeMs / 1000, src.st.mtimeMs / 1000);
    } catch (err) {
      throw classifyDestination(err, dest);
    }
    if (!(await sameBytes(src.fh, level, tmp))) {
      throw new ConnectorError('transient', `the quarantine copy of ${JSON.stringify(src.id)} differs from the file (it changed while being copied); retry`);
    }
    try {
      await linkAt(level, tmp, level, name);
    } catch (err) {
      const code = errno(err) ?? '';
      if (code === 'EEXIST') return 'exists';
      if (NO_HARD_LINK.has(code)) {
        throw new ConnectorError('configuration', `quarantine destination ${dest} is on a filesystem without hard links (${code}), so a copy cannot be put in place without risking replacing another; choose a quarantine directory on ext4, xfs, btrfs or tmpfs`, { cause: err });
      }
      throw classifyDestination(err, dest);
    }
    return 'copied';
  } finally {
    await unlinkAt(level, tmp).catch(() => {});
  }
}

/** True when `name` in `level` is the source file itself or a regular file with exactly its bytes. */
async function isCopyOf(src: Source, level: HeldDir, name: Buffer): Promise<boolean> {
  const st = await lstatAt(level, name).catch(() => null);
  if (st === null || !st.isFile()) return false;
  if (st.ino === src.st.ino && st.dev === src.st.dev) return true;
  return st.size === src.st.size && sameBytes(src.fh, level, name);
}

/** Removes the source name once the file is in quarantine, unless the name now holds another file. */
async function unlinkSource(src: Source): Promise<string> {
  const now = await lstatAt(src.entry.parent, src.entry.name).catch(() => null);
  if (now === null) return '';
  if (now.ino !== src.st.ino || now.dev !== src.st.dev) return `; ${JSON.stringify(src.id)} now names another file, left in place`;
  try {
    await unlinkAt(src.entry.parent, src.entry.name);
  } catch (err) {
    if (errno(err) !== 'ENOENT') {
      throw new ConnectorError('transient', `${JSON.stringify(src.id)} is in quarantine but could not be removed from the share: ${(err as Error).message}; retry`, { cause: err });
    }
  }
  return '';
}

/** Compares the open file with `name` in `level` (not followed if a symlink), by size and SHA-256. */
async function sameBytes(fh: fs.FileHandle, level: HeldDir, name: Buffer): Promise<boolean> {
  let other: fs.FileHandle;
  try {
    other = await openFileAt(level, name);
  } catch {
    return false;
  }
  try {
    const [a, b] = await Promise.all([fh.stat(), other.stat()]);
    if (!b.isFile() || a.size !== b.size) return false;
    const [ha, hb] = await Promise.all([digest(fh), digest(other)]);
    return ha === hb;
  } finally {
    await other.close().catch(() => {});
  }
}

/** SHA-256 of a whole open file, read by position (the handle's offset is left alone). */
async function digest(fh: fs.FileHandle): Promise<string> {
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(1 << 16);
  for (let pos = 0; ; ) {
    const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
    if (bytesRead === 0) return hash.digest('hex');
    hash.update(buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
}

/** Destination names to try, in order (see the module comment). */
function* candidateNames(base: Buffer, key: string | undefined): Generator<Buffer> {
  if (key !== undefined) {
    yield withSuffix(base, `.dsx-${createHash('sha256').update(key).digest('hex').slice(0, 16)}`);
    return;
  }
  yield base;
  for (let n = 2; n <= NUMBERED_NAMES; n++) yield withSuffix(base, `.dsx-${n}`);
  yield withSuffix(base, `.dsx-${randomUUID()}`);
}

/** `base` + `suffix`, `base` shortened at a UTF-8 character boundary when the result would exceed NAME_MAX. */
function withSuffix(base: Buffer, suffix: string): Buffer {
  const s = Buffer.from(suffix);
  let cut = Math.min(base.length, NAME_MAX - s.length);
  while (cut > 0 && cut < base.length && (base[cut] & 0xc0) === 0x80) cut--;
  return Buffer.concat([base.subarray(0, cut), s]);
}
