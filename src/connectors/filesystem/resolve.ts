/**
 * Path safety: resolves an identity inside the integration root through held directory descriptors
 * (descriptors.ts), one component at a time, never letting the kernel follow a symbolic link.
 *
 * A symlink inside the root is resolved here, in code, against the held chain: a relative target
 * continues from the link's own directory (`..` pops our own chain, and popping past the root is an
 * escape), an absolute target must name a path below the root (its real or its configured path) and
 * continues from the root. So a directory swapped for a symlink between two calls can redirect a lookup
 * only to somewhere inside the root, and a link that points outside is refused as `escape`, whatever
 * happens to the paths meanwhile. At most 40 links are followed per identity, Linux's own MAXSYMLINKS.
 */
import type { Stats } from 'node:fs';
import { nameFromBytes } from '../identity.ts';
import { ConnectorError } from '../types.ts';
import { closeAll, lstatAt, locationOf, openDirAt, openDirPath, readlinkAt, type HeldDir } from './descriptors.ts';
import { classify, errno } from './errors.ts';
import { componentsOf, splitBytes, stripDir } from './paths.ts';

const MAX_SYMLINKS = 40;
const DOT = Buffer.from('.');

/** The integration root, held open for one operation, with where the kernel says it is. */
export interface OpenRoot {
  dir: HeldDir;
  /** The root's real path now (bytes), read once when first needed. */
  real(): Promise<Buffer>;
  /** The root as configured (text in identity form, and its bytes). */
  text: string;
  bytes: Buffer;
}

/** Opens the integration root. Errors are the raw system errors: callers say what they were doing. */
export async function openRoot(text: string, bytes: Buffer): Promise<OpenRoot> {
  const dir = await openDirPath(bytes);
  let real: Promise<Buffer> | undefined;
  return { dir, real: () => (real ??= locationOf(dir)), text, bytes };
}

/** An entry found inside the root (never a symlink): its held parent, its name there, and its lstat. */
export interface Located {
  parent: HeldDir;
  name: Buffer;
  stats: Stats;
  /** Closes the directories opened on the way (not the root). */
  release(): Promise<void>;
}

/** Finds the entry an identity names, following symlinks only inside the root. Null when it does not exist. */
export async function locateEntry(root: OpenRoot, identity: string): Promise<Located | null> {
  const r = await resolve(root, identity, 'entry');
  return r === 'missing' ? null : (r as Located);
}

/**
 * Opens the directory an identity names (a fresh handle, `""` being the root itself), following symlinks
 * only inside the root. `'missing'` or `'not_directory'` when it is not there.
 */
export async function locateDir(root: OpenRoot, identity: string): Promise<HeldDir | 'missing' | 'not_directory'> {
  return (await resolve(root, identity, 'dir')) as HeldDir | 'missing' | 'not_directory';
}

const isDot = (b: Buffer) => b.length === 1 && b[0] === 0x2e;
const isDotDot = (b: Buffer) => b.length === 2 && b[0] === 0x2e && b[1] === 0x2e;

async function resolve(root: OpenRoot, identity: string, want: 'entry' | 'dir'): Promise<Located | HeldDir | 'missing' | 'not_directory'> {
  const shown = JSON.stringify(identity);
  const pending = componentsOf(identity);
  const chain: HeldDir[] = [];
  const top = () => chain.at(-1) ?? root.dir;
  let links = 0;
  let keep = false;

  /**
   * Continues the walk with a symlink's target; 'missing' when the link vanished meanwhile. Each call
   * counts towards MAX_SYMLINKS, so does looking again at an entry that changed type under us: a
   * component swapped back and forth without end makes the lookup fail, never spin.
   */
  const follow = async (name: Buffer): Promise<'missing' | undefined> => {
    if (++links > MAX_SYMLINKS) throw new ConnectorError('invalid', `${shown} has too many levels of symbolic links`);
    let target: Buffer;
    try {
      target = await readlinkAt(top(), name);
    } catch (err) {
      const code = errno(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') return 'missing';
      if (code !== 'EINVAL') throw classify(err, shown);
      pending.unshift(name); // no longer a symlink (swapped back): look at it again
      return undefined;
    }
    if (target[0] === 0x2f) {
      const rest = stripDir(target, await root.real()) ?? stripDir(target, root.bytes);
      if (rest === null) {
        throw new ConnectorError('escape', `${shown} resolves to ${nameFromBytes(target)}, outside the integration root ${root.text}`);
      }
      await closeAll(chain.splice(0));
      pending.unshift(...splitBytes(rest));
    } else {
      pending.unshift(...splitBytes(target));
    }
  };
  /** lstat that says null for an entry that is not there (or whose parent is not a directory). */
  const lstatOrNull = async (name: Buffer): Promise<Stats | null> => {
    try {
      return await lstatAt(top(), name);
    } catch (err) {
      const code = errno(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') return null;
      throw classify(err, shown);
    }
  };

  try {
    for (;;) {
      const name = pending.shift();
      if (name === undefined) {
        // The identity names a directory of the chain itself (the root, or a link to `.`).
        // The popped directory is the caller's; `finally` closes the rest of the chain.
        if (want === 'dir') return chain.length > 0 ? chain.pop()! : await openDirAt(root.dir, DOT);
        keep = true;
        return located(top(), DOT, await top().stat(), chain);
      }
      if (isDot(name)) continue;
      if (isDotDot(name)) {
        if (chain.length === 0) throw new ConnectorError('escape', `${shown} resolves outside the integration root ${root.text} (through a symbolic link)`);
        await chain.pop()!.close();
        continue;
      }
      const last = pending.length === 0;
      if (last && want === 'entry') {
        const st = await lstatOrNull(name);
        if (st === null) return 'missing';
        if (st.isSymbolicLink()) {
          if ((await follow(name)) === 'missing') return 'missing';
          continue;
        }
        keep = true;
        return located(top(), name, st, chain);
      }
      try {
        chain.push(await openDirAt(top(), name));
      } catch (err) {
        const code = errno(err);
        if (code === 'ENOENT') return 'missing';
        if (code !== 'ENOTDIR' && code !== 'ELOOP') throw classify(err, shown);
        const st = await lstatOrNull(name);
        if (st === null) return 'missing';
        if (st.isSymbolicLink()) {
          if ((await follow(name)) === 'missing') return 'missing';
          continue;
        }
        if (st.isDirectory()) {
          // A directory again (swapped back between open and lstat): look at it again.
          if (++links > MAX_SYMLINKS) throw new ConnectorError('transient', `${shown} kept changing while it was being opened; retry`, { cause: err });
          pending.unshift(name);
          continue;
        }
        return last ? 'not_directory' : 'missing';
      }
    }
  } finally {
    if (!keep) await closeAll(chain);
  }
}

function located(parent: HeldDir, name: Buffer, stats: Stats, chain: HeldDir[]): Located {
  const held = [...chain];
  return { parent, name, stats, release: () => closeAll(held) };
}
