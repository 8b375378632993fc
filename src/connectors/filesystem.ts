/**
 * The filesystem connector: one integration is a directory on a local or mounted filesystem.
 *
 * Enumeration is a depth-first walk in code-unit name order that never reads the whole tree: a page
 * resumes by descending along the cursor's path only, so memory and work per page are bounded by the
 * page size and the directories on that path. Symbolic links are never followed while listing, and no
 * identity can reach outside the root (`..`, absolute paths and symlinks whose real path is outside
 * are refused with `ConnectorError('escape')`). Names are read as bytes: one that is not valid UTF-8
 * gets an identity that maps back to exactly its bytes (see `nameFromBytes` in identity.ts), so it is
 * scanned like any other file instead of being skipped.
 *
 * Directory reads are not atomic with respect to concurrent renames into symlinks (a classic TOCTOU);
 * `open` and the item actions re-check the real path, which is what protects the bytes served.
 */
import { randomUUID } from 'node:crypto';
import { constants as fsConstants, type Stats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fsPath, isWithin, joinIdentity, nameFromBytes, normalizeRelativePath } from './identity.ts';
import {
  ConnectorError,
  type ActionResult,
  type Connector,
  type ConnectorErrorKind,
  type ObjectInfo,
  type OpenedObject,
  type Page,
} from './types.ts';

/** Settings of a filesystem integration. */
export interface FilesystemConnectorOptions {
  /** Absolute directory of the integration. */
  root: string;
  /** Absolute directory where quarantined files go; default `${root}/.dsx-quarantine`. */
  quarantineDir?: string;
}

type EntryType = 'file' | 'dir' | 'unknown';

/** A directory entry kept for the walk: only candidates for files or directories. */
interface Entry {
  name: string;
  type: EntryType;
}

/** One directory on the walk's stack: its identity, its sorted entries, and the next one to visit. */
interface Frame {
  rel: string;
  entries: Entry[];
  pos: number;
}

/** Errors that make a directory met during the walk skippable rather than fatal. */
const SKIPPABLE = new Set(['ENOENT', 'ENOTDIR', 'EACCES', 'EPERM', 'ELOOP']);

const OPEN_FLAGS = fsConstants.O_RDONLY | (fsConstants.O_NOFOLLOW ?? 0) | (fsConstants.O_NONBLOCK ?? 0);

/**
 * Connector for a directory tree. Identities are paths relative to `root`; item actions act on the file
 * an identity resolves to (after checking its real path stays inside the root's real path).
 */
export class FilesystemConnector implements Connector {
  readonly kind = 'filesystem';
  readonly #root: string;
  readonly #quarantineDir: string;

  constructor(opts: FilesystemConnectorOptions) {
    if (typeof opts.root !== 'string' || !path.isAbsolute(opts.root)) {
      throw new ConnectorError('invalid', `filesystem root must be an absolute path, got ${JSON.stringify(opts.root)}`);
    }
    this.#root = textPath(path.resolve(opts.root));
    const q = opts.quarantineDir ?? path.join(this.#root, '.dsx-quarantine');
    if (!path.isAbsolute(q)) {
      throw new ConnectorError('invalid', `quarantine directory must be an absolute path, got ${JSON.stringify(q)}`);
    }
    this.#quarantineDir = textPath(path.resolve(q));
    if (relativeInside(this.#quarantineDir, this.#root) !== null) {
      throw new ConnectorError('invalid', `quarantine directory ${this.#quarantineDir} must not contain the root ${this.#root}`);
    }
  }

  /** Absolute directory of the integration. */
  get root(): string {
    return this.#root;
  }

  /** Absolute directory of the quarantine area. */
  get quarantineDir(): string {
    return this.#quarantineDir;
  }

  async listPage(scopeRoot: string, cursor: string | null, pageSize: number): Promise<Page> {
    if (!Number.isInteger(pageSize) || pageSize < 1) {
      throw new ConnectorError('invalid', `page size must be a positive integer, got ${pageSize}`);
    }
    const scope = normalizeRelativePath(scopeRoot);
    const after = cursor === null ? null : decodeCursor(cursor, scope);
    const scopeAbs = this.#abs(scope);

    let realScope: string;
    try {
      realScope = await realPath(scopeAbs);
    } catch (err) {
      throw classify(err, `scope root ${JSON.stringify(scope)} (${scopeAbs})`);
    }
    const realRoot = await this.#realRoot();
    if (relativeInside(realRoot, realScope) === null) {
      throw new ConnectorError('escape', `scope root ${JSON.stringify(scope)} resolves to ${realScope}, outside the integration root`);
    }
    const skip = await this.#quarantineIdentities(realRoot);
    for (const q of skip) if (isWithin(q, scope)) return { objects: [], nextCursor: null };

    let scopeEntries: Entry[];
    try {
      scopeEntries = await readSortedEntries(scopeAbs);
    } catch (err) {
      if (errno(err) === 'ENOTDIR') {
        throw new ConnectorError('invalid', `scope root ${JSON.stringify(scope)} (${scopeAbs}) is not a directory`, { cause: err });
      }
      throw classify(err, `scope root ${JSON.stringify(scope)} (${scopeAbs})`);
    }
    const frames: Frame[] = [{ rel: scope, entries: scopeEntries, pos: 0 }];
    if (after !== null) await this.#resume(frames, after, skip);

    const objects: ObjectInfo[] = [];
    let more = false;
    while (frames.length > 0) {
      const top = frames[frames.length - 1];
      if (top.pos >= top.entries.length) {
        frames.pop();
        continue;
      }
      const entry = top.entries[top.pos++];
      const rel = joinIdentity(top.rel, entry.name);
      let type: EntryType = entry.type;
      let st: Stats | null = null;
      if (type !== 'dir') {
        st = await lstatOrNull(this.#abs(rel));
        if (st === null) continue;
        if (st.isFile()) type = 'file';
        else if (st.isDirectory()) type = 'dir';
        else continue;
      }
      if (type === 'dir') {
        if (skip.has(rel)) continue;
        const entries = await readDirOrNull(this.#abs(rel));
        if (entries !== null) frames.push({ rel, entries, pos: 0 });
        continue;
      }
      if (objects.length === pageSize) {
        more = true; // peeked one object beyond the page
        break;
      }
      objects.push({ identity: rel, size: st!.size, mtime: st!.mtime.toISOString() });
    }
    return { objects, nextCursor: more ? encodeCursor(objects[objects.length - 1].identity) : null };
  }

  /**
   * Positions `frames` (holding only the scope frame) right after identity `after`: at each level,
   * skips the names up to the cursor's component and descends into the component's directory if it
   * still exists. Vanished or unreadable directories on the path are simply not descended into.
   */
  async #resume(frames: Frame[], after: string, skip: ReadonlySet<string>): Promise<void> {
    const scope = frames[0].rel;
    const parts = (scope === '' ? after : after.slice(scope.length + 1)).split('/');
    for (let j = 0; j < parts.length; j++) {
      const frame = frames[j];
      frame.pos = upperBound(frame.entries, parts[j]);
      if (j === parts.length - 1) return;
      const rel = joinIdentity(frame.rel, parts[j]);
      if (skip.has(rel)) return;
      const st = await lstatOrNull(this.#abs(rel));
      if (st === null || !st.isDirectory()) return;
      const entries = await readDirOrNull(this.#abs(rel));
      if (entries === null) return;
      frames.push({ rel, entries, pos: 0 });
    }
  }

  async open(identity: string): Promise<OpenedObject> {
    const resolved = await this.#resolve(identity);
    if (resolved === null) throw new ConnectorError('not_found', `${JSON.stringify(identity)} does not exist`);
    const { id, real } = resolved;
    await this.#requireRegularFile(id, real);
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(fsPath(real), OPEN_FLAGS);
    } catch (err) {
      if (errno(err) === 'ELOOP') {
        throw new ConnectorError('transient', `${JSON.stringify(id)} changed into a symbolic link while opening`, { cause: err });
      }
      throw classify(err, JSON.stringify(id));
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new ConnectorError('invalid', `${JSON.stringify(id)} is not a regular file`);
      return { stream: fh.createReadStream(), size: st.size };
    } catch (err) {
      await fh.close().catch(() => {});
      throw err instanceof ConnectorError ? err : classify(err, JSON.stringify(id));
    }
  }

  async stat(identity: string): Promise<ObjectInfo | null> {
    const resolved = await this.#resolve(identity);
    if (resolved === null) return null;
    const st = await lstatOrThrow(resolved.real, resolved.id);
    if (st === null || !st.isFile()) return null;
    return { identity: resolved.id, size: st.size, mtime: st.mtime.toISOString() };
  }

  /** Deletes the file the identity resolves to (the bytes `open` serves). */
  async remove(identity: string): Promise<ActionResult> {
    const resolved = await this.#resolve(identity);
    if (resolved === null) return { status: 'already_done', detail: 'file does not exist' };
    const { id, real } = resolved;
    const st = await lstatOrThrow(real, id);
    if (st === null) return { status: 'already_done', detail: 'file does not exist' };
    if (!st.isFile()) throw new ConnectorError('invalid', `${JSON.stringify(id)} is not a regular file`);
    try {
      await fs.unlink(fsPath(real));
    } catch (err) {
      if (errno(err) === 'ENOENT') return { status: 'already_done', detail: 'file does not exist' };
      throw classify(err, JSON.stringify(id));
    }
    return { status: 'done' };
  }

  /**
   * Moves the file to `quarantineDir/<identity>` (creating directories; an earlier quarantined copy
   * with the same identity is replaced). Rename, or copy + unlink across filesystems.
   */
  async quarantine(identity: string): Promise<ActionResult> {
    const id = normalizeRelativePath(identity);
    const dest = path.join(this.#quarantineDir, id);
    const resolved = await this.#resolve(id);
    if (resolved === null) {
      if (await existsOrThrow(dest, id)) return { status: 'already_done', detail: `already in quarantine at ${dest}` };
      throw new ConnectorError('not_found', `${JSON.stringify(id)} does not exist and is not in quarantine`);
    }
    const { real } = resolved;
    const realQuarantine = await realPath(this.#quarantineDir).catch(() => this.#quarantineDir);
    if (relativeInside(realQuarantine, real) !== null) {
      return { status: 'already_done', detail: 'file is inside the quarantine directory' };
    }
    const st = await lstatOrThrow(real, id);
    if (st === null) {
      if (await existsOrThrow(dest, id)) return { status: 'already_done', detail: `already in quarantine at ${dest}` };
      throw new ConnectorError('not_found', `${JSON.stringify(id)} does not exist and is not in quarantine`);
    }
    if (!st.isFile()) throw new ConnectorError('invalid', `${JSON.stringify(id)} is not a regular file`);

    try {
      await fs.mkdir(fsPath(path.dirname(dest)), { recursive: true });
    } catch (err) {
      throw classifyDestination(err, dest);
    }
    try {
      await fs.rename(fsPath(real), fsPath(dest));
    } catch (err) {
      const code = errno(err);
      if (code === 'EXDEV') {
        await copyThenUnlink(real, dest, st, id);
      } else if (code === 'ENOENT' && !(await existsOrThrow(real, id)) && (await existsOrThrow(dest, id))) {
        return { status: 'already_done', detail: `already in quarantine at ${dest}` };
      } else {
        throw code === 'EACCES' || code === 'EPERM' ? classify(err, JSON.stringify(id)) : classifyDestination(err, dest);
      }
    }
    return { status: 'done', detail: `moved to ${dest}` };
  }

  async tag(_identity: string, _tags: Record<string, string>): Promise<ActionResult> {
    return { status: 'not_supported', detail: 'plain filesystems have no object tags' };
  }

  /** Absolute lexical path of a canonical identity. */
  #abs(rel: string): string {
    return rel === '' ? this.#root : path.join(this.#root, rel);
  }

  async #realRoot(): Promise<string> {
    try {
      return await realPath(this.#root);
    } catch (err) {
      throw new ConnectorError('transient', `integration root ${this.#root} is not accessible: ${messageOf(err)}`, { cause: err });
    }
  }

  /** Identities (relative to the root) of the quarantine directory, when it lies inside the root. */
  async #quarantineIdentities(realRoot: string): Promise<Set<string>> {
    const skip = new Set<string>();
    const lexical = relativeInside(this.#root, this.#quarantineDir);
    if (lexical) skip.add(lexical);
    const realQ = await realPath(this.#quarantineDir).catch(() => null);
    const real = realQ === null ? null : relativeInside(realRoot, realQ);
    if (real) skip.add(real);
    return skip;
  }

  /**
   * Validates an identity and resolves its real path, refusing anything outside the root's real path.
   * Null when it does not exist.
   */
  async #resolve(identity: string): Promise<{ id: string; real: string } | null> {
    const id = normalizeRelativePath(identity);
    if (id === '') throw new ConnectorError('invalid', 'the integration root is a directory, not an object');
    const realRoot = await this.#realRoot();
    let real: string;
    try {
      real = await realPath(this.#abs(id));
    } catch (err) {
      const code = errno(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') return null;
      throw classify(err, JSON.stringify(id));
    }
    if (relativeInside(realRoot, real) === null) {
      throw new ConnectorError('escape', `${JSON.stringify(id)} resolves to ${real}, outside the integration root ${realRoot}`);
    }
    return { id, real };
  }

  /** Refuses directories, FIFOs, devices... before opening (opening some of them has side effects). */
  async #requireRegularFile(id: string, real: string): Promise<void> {
    const st = await lstatOrThrow(real, id);
    if (st === null) throw new ConnectorError('not_found', `${JSON.stringify(id)} does not exist`);
    if (!st.isFile()) throw new ConnectorError('invalid', `${JSON.stringify(id)} is not a regular file`);
  }
}

/** Encodes the identity of the last object of a page as a cursor. */
function encodeCursor(identity: string): string {
  return JSON.stringify({ after: identity });
}

/** Decodes a cursor and checks that it lies strictly inside `scope`. */
function decodeCursor(cursor: string, scope: string): string {
  let after: unknown;
  try {
    after = (JSON.parse(cursor) as { after?: unknown } | null)?.after;
  } catch {
    after = undefined;
  }
  if (typeof after !== 'string') throw new ConnectorError('invalid', `bad filesystem cursor ${JSON.stringify(cursor)}`);
  const id = normalizeRelativePath(after);
  if (id === scope || !isWithin(scope, id)) {
    throw new ConnectorError('invalid', `cursor ${JSON.stringify(id)} is not inside scope root ${JSON.stringify(scope)}`);
  }
  return id;
}

/**
 * Paths inside this connector are text in the form of identity.ts (bytes of names that are not valid
 * UTF-8 kept as escapes); every `fs` call takes `fsPath(...)` of them, and real paths come back the same way.
 */
function textPath(p: string): string {
  return nameFromBytes(Buffer.from(p, 'utf8'));
}

async function realPath(p: string): Promise<string> {
  return nameFromBytes(await fs.realpath(fsPath(p), { encoding: 'buffer' }));
}

/** Plain UTF-16 code-unit comparison (locale-independent, stable across runs). */
function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Index of the first entry whose name sorts after `name`. */
function upperBound(entries: Entry[], name: string): number {
  let lo = 0;
  let hi = entries.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareNames(entries[mid].name, name) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Entries of a directory that may be files or directories (symlinks and specials dropped), sorted. */
async function readSortedEntries(dir: string): Promise<Entry[]> {
  // Names as bytes: a name that is not valid UTF-8 keeps them (nameFromBytes), so it can be opened.
  const dirents = await fs.readdir(fsPath(dir), { withFileTypes: true, encoding: 'buffer' });
  const entries: Entry[] = [];
  for (const d of dirents) {
    const name = nameFromBytes(d.name);
    if (d.isFile()) entries.push({ name, type: 'file' });
    else if (d.isDirectory()) entries.push({ name, type: 'dir' });
    else if (d.isSymbolicLink() || d.isFIFO() || d.isSocket() || d.isBlockDevice() || d.isCharacterDevice()) continue;
    else entries.push({ name, type: 'unknown' }); // filesystem without d_type: lstat later
  }
  entries.sort((a, b) => compareNames(a.name, b.name));
  return entries;
}

/** Like readSortedEntries, but null for a directory that vanished or cannot be read. */
async function readDirOrNull(dir: string): Promise<Entry[] | null> {
  try {
    return await readSortedEntries(dir);
  } catch (err) {
    if (SKIPPABLE.has(errno(err) ?? '')) return null;
    throw classify(err, dir);
  }
}

/** lstat for the walk: null when the entry vanished or cannot be inspected. */
async function lstatOrNull(p: string): Promise<Stats | null> {
  try {
    return await fs.lstat(fsPath(p));
  } catch (err) {
    if (SKIPPABLE.has(errno(err) ?? '')) return null;
    throw classify(err, p);
  }
}

/** lstat for actions: null when missing, a classified ConnectorError otherwise. */
async function lstatOrThrow(p: string, id: string): Promise<Stats | null> {
  try {
    return await fs.lstat(fsPath(p));
  } catch (err) {
    const code = errno(err);
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw classify(err, JSON.stringify(id));
  }
}

async function existsOrThrow(p: string, id: string): Promise<boolean> {
  return (await lstatOrThrow(p, id)) !== null;
}

/** Cross-device move: copy to a temporary name next to `dest`, rename into place, then unlink `src`. */
async function copyThenUnlink(src: string, dest: string, st: Stats, id: string): Promise<void> {
  const tmp = `${dest}.dsx-partial-${randomUUID()}`;
  try {
    await fs.copyFile(fsPath(src), fsPath(tmp), fsConstants.COPYFILE_EXCL);
    await fs.utimes(fsPath(tmp), st.atimeMs / 1000, st.mtimeMs / 1000);
    await fs.rename(fsPath(tmp), fsPath(dest));
  } catch (err) {
    await fs.rm(fsPath(tmp), { force: true }).catch(() => {});
    if (errno(err) === 'ENOENT' && !(await existsOrThrow(src, id))) {
      throw new ConnectorError('transient', `${JSON.stringify(id)} vanished while being copied to quarantine`, { cause: err });
    }
    throw classifyDestination(err, dest);
  }
  try {
    await fs.unlink(fsPath(src));
  } catch (err) {
    if (errno(err) !== 'ENOENT') throw classify(err, JSON.stringify(id));
  }
}

/** Path of `target` relative to `base` in identity form, `""` for base itself, null when outside. */
export function relativeInside(base: string, target: string): string | null {
  const rel = path.relative(base, target);
  if (rel === '') return '';
  if (rel === '..' || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel)) return null;
  return rel.split(path.sep).join('/');
}

function errno(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Maps an operating-system error about `what` to a ConnectorError. */
function classify(err: unknown, what: string): ConnectorError {
  if (err instanceof ConnectorError) return err;
  const code = errno(err);
  const kinds: Record<string, [ConnectorErrorKind, string]> = {
    ENOENT: ['not_found', 'does not exist'],
    ENOTDIR: ['not_found', 'does not exist (a parent is not a directory)'],
    EACCES: ['permission', 'is not accessible (permission denied)'],
    EPERM: ['permission', 'is not accessible (operation not permitted)'],
    EISDIR: ['invalid', 'is a directory, not a regular file'],
    ELOOP: ['invalid', 'has too many levels of symbolic links'],
    // Retrying cannot shorten a name: without this a too-long identity was retried as transient.
    ENAMETOOLONG: ['invalid', 'is too long for the filesystem (a name over 255 bytes or a path over 4,096)'],
  };
  const [kind, text] = (code && kinds[code]) || ['transient', `failed: ${messageOf(err)}`];
  return new ConnectorError(kind, `${what} ${text}`, { cause: err });
}

/** Maps an error about the quarantine destination: blocked paths are permanent, the rest transient. */
function classifyDestination(err: unknown, dest: string): ConnectorError {
  if (err instanceof ConnectorError) return err;
  const code = errno(err);
  if (code === 'EACCES' || code === 'EPERM') {
    return new ConnectorError('permission', `quarantine destination ${dest} is not writable`, { cause: err });
  }
  if (code === 'ENAMETOOLONG') {
    return new ConnectorError('invalid', `quarantine destination ${dest} is too long for the filesystem`, { cause: err });
  }
  if (code === 'EEXIST' || code === 'ENOTDIR' || code === 'EISDIR' || code === 'ENOTEMPTY') {
    return new ConnectorError('invalid', `quarantine destination ${dest} is blocked by an existing entry (${code})`, { cause: err });
  }
  return new ConnectorError('transient', `moving to quarantine destination ${dest} failed: ${messageOf(err)}`, { cause: err });
}
