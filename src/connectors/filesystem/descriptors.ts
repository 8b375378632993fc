/**
 * Directory descriptors for a runtime without openat(2): every lookup below a held directory goes
 * through its "magic link" `/proc/self/fd/<fd>/<name>`.
 *
 * Why this is safe against a directory swapped for a symbolic link (Linux; each point was tried on this
 * machine with Node 24 before relying on it, and test/filesystem-swap.test.ts keeps proving it):
 * - `/proc/self/fd/<fd>` is not an ordinary symlink: resolving it jumps to the very file the descriptor
 *   holds, not to whatever its old path names now. A held directory renamed away and replaced by a
 *   symlink to `/etc` still resolves to the held directory.
 * - only one component follows the link, so there is no intermediate component the kernel could follow,
 *   and the last one is never followed: opens pass O_NOFOLLOW (a symlink fails with ELOOP, or ENOTDIR
 *   together with O_DIRECTORY); lstat, unlink, link, rename, mkdir and readlink never follow it.
 * - readdir of `/proc/self/fd/<fd>` re-opens the held directory through the link (the same inode).
 * - link and rename between two held directories work when both are on one filesystem (EXDEV otherwise).
 * - `/proc/self` is the process, not the thread: libuv's threadpool shares the descriptor table.
 * Where `/proc/self/fd` is missing (not Linux, /proc not mounted) every operation fails closed.
 */
import { constants as fsConstants, type Dirent, type Stats } from 'node:fs';
import fs from 'node:fs/promises';
import { ConnectorError } from '../types.ts';

const DIR_FLAGS = fsConstants.O_RDONLY | fsConstants.O_DIRECTORY;
const DIR_NOFOLLOW_FLAGS = DIR_FLAGS | fsConstants.O_NOFOLLOW;
/** O_NONBLOCK: opening a FIFO swapped in after the type check must not block a worker thread. */
const FILE_FLAGS = fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK;

/** A directory held open by descriptor; names below it are looked up in it, never by path. */
export class HeldDir {
  readonly #handle: fs.FileHandle;
  readonly #prefix: Buffer;
  #closed = false;

  constructor(handle: fs.FileHandle) {
    this.#handle = handle;
    this.#prefix = Buffer.from(`/proc/self/fd/${handle.fd}/`);
  }

  /** The path of `name` (one component, as bytes) inside this directory. */
  at(name: Buffer): Buffer {
    return Buffer.concat([this.#prefix, name]);
  }

  /** The magic link naming the held directory itself. */
  get self(): string {
    return `/proc/self/fd/${this.#handle.fd}`;
  }

  /** fstat of the held directory. */
  stat(): Promise<Stats> {
    return this.#handle.stat();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#handle.close();
  }
}

let procChecked: Promise<void> | undefined;

/** Fails closed with a clear ConnectorError when `/proc/self/fd` cannot be used as described above. */
export function requireProcFd(): Promise<void> {
  procChecked ??= (async () => {
    const refuse = (why: string, cause?: unknown) =>
      new ConnectorError(
        'unavailable',
        `the filesystem connector needs /proc/self/fd (${why}) to act on files without following symbolic links; run the worker on Linux with /proc mounted`,
        { cause },
      );
    if (process.platform !== 'linux') throw refuse(`this is ${process.platform}, not Linux`);
    let handle: fs.FileHandle | undefined;
    try {
      handle = await fs.open('/', DIR_FLAGS);
      if ((await fs.readlink(`/proc/self/fd/${handle.fd}`)) !== '/') throw new Error('it does not name the held directory');
    } catch (err) {
      throw refuse('it is not usable here', err);
    } finally {
      await handle?.close();
    }
  })();
  procChecked.catch(() => {
    procChecked = undefined; // /proc may be mounted later: check again next time
  });
  return procChecked;
}

/** Opens a directory by absolute path, following symlinks on the way (for operator-chosen roots). */
export async function openDirPath(p: string | Buffer): Promise<HeldDir> {
  await requireProcFd();
  return new HeldDir(await fs.open(p, DIR_FLAGS));
}

/** Opens the directory `name` inside `dir`; a symlink there fails (ENOTDIR or ELOOP), it is not followed. */
export async function openDirAt(dir: HeldDir, name: Buffer): Promise<HeldDir> {
  return new HeldDir(await fs.open(dir.at(name), DIR_NOFOLLOW_FLAGS));
}

/** Opens `name` inside `dir` for reading; a symlink fails with ELOOP. Check the result with fstat. */
export function openFileAt(dir: HeldDir, name: Buffer): Promise<fs.FileHandle> {
  return fs.open(dir.at(name), FILE_FLAGS);
}

/** lstat of `name` inside `dir`. */
export function lstatAt(dir: HeldDir, name: Buffer): Promise<Stats> {
  return fs.lstat(dir.at(name));
}

/** The target of the symlink `name` inside `dir`, as bytes. */
export function readlinkAt(dir: HeldDir, name: Buffer): Promise<Buffer> {
  return fs.readlink(dir.at(name), { encoding: 'buffer' });
}

/** Entries of the held directory, names as bytes (a name need not be valid UTF-8). */
export function readdirHeld(dir: HeldDir): Promise<Dirent<Buffer>[]> {
  return fs.readdir(dir.self, { withFileTypes: true, encoding: 'buffer' });
}

export function unlinkAt(dir: HeldDir, name: Buffer): Promise<void> {
  return fs.unlink(dir.at(name));
}

/** Creates directory `name` inside `dir`; an existing entry (a symlink too) fails with EEXIST. */
export function mkdirAt(dir: HeldDir, name: Buffer, mode: number): Promise<void> {
  return fs.mkdir(dir.at(name), { mode }).then(() => undefined);
}

/** A new name for an existing file: fails with EEXIST rather than replace anything (the no-clobber move). */
export function linkAt(from: HeldDir, fromName: Buffer, to: HeldDir, toName: Buffer): Promise<void> {
  return fs.link(from.at(fromName), to.at(toName));
}

/**
 * Copies the open file `source` (exactly the file the handle holds, read through its own magic link)
 * to a new file `name` in `dir`; COPYFILE_EXCL makes an existing entry, a symlink too, fail with EEXIST.
 */
export function copyHandleTo(source: fs.FileHandle, dir: HeldDir, name: Buffer): Promise<void> {
  return fs.copyFile(`/proc/self/fd/${source.fd}`, dir.at(name), fsConstants.COPYFILE_EXCL);
}

/** Sets the times (seconds, fractions kept) of `name` in `dir` without following a symlink. */
export function lutimesAt(dir: HeldDir, name: Buffer, atime: number, mtime: number): Promise<void> {
  return fs.lutimes(dir.at(name), atime, mtime);
}

/** Where the held directory is now, as the kernel names it (bytes). */
export function locationOf(dir: HeldDir): Promise<Buffer> {
  return fs.readlink(dir.self, { encoding: 'buffer' });
}

/** Closes every given directory, ignoring errors (cleanup after a failure must not mask it). */
export async function closeAll(dirs: Iterable<HeldDir | undefined>): Promise<void> {
  await Promise.all([...dirs].map((d) => d?.close().catch(() => {})));
}
