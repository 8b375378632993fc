/**
 * Enumeration: a depth-first walk in code-unit name order that never reads the whole tree. A page
 * resumes by descending along the cursor's path only, so memory and work per page are bounded by the
 * page size and the directories on that path. Every directory is listed through a held descriptor
 * opened without following symlinks (descriptors.ts), so a directory swapped for a symlink mid-walk is
 * met as a symlink and reported, never listed.
 *
 * Nothing is skipped silently: each entry met and not returned as an object (symlink, FIFO, socket,
 * device, a directory that cannot be listed) is in `Page.skipped`, exactly once per enumeration. A page
 * that ends by peeking at the next object drops what it met after its last object (the next page,
 * resuming right after that object, meets and reports them), and a page reports at most
 * max(pageSize, 1,000) skipped entries, ending after the last one (its cursor then names that entry).
 */
import type { Stats } from 'node:fs';
import { isWithin, joinIdentity, nameFromBytes, normalizeRelativePath } from '../identity.ts';
import { ConnectorError, type ObjectInfo, type Page, type SkippedEntry } from '../types.ts';
import { closeAll, lstatAt, openDirAt, readdirHeld, type HeldDir } from './descriptors.ts';
import { classify, errno } from './errors.ts';
import { locateDir, openRoot, type OpenRoot } from './resolve.ts';

/** The fewest skipped entries a page may carry before it ends early (bounded memory per page). */
export const MIN_SKIPPED_PER_PAGE = 1000;

type EntryType = 'file' | 'dir' | 'symlink' | 'special' | 'unknown';

/** A directory entry: its name as text (identity form) and as the bytes the filesystem holds. */
interface Entry {
  name: string;
  bytes: Buffer;
  type: EntryType;
  /** What kind of special file (`fifo`, `socket`, ...). */
  special?: string;
}

/** One directory on the walk's stack: its identity, its held descriptor, its sorted entries, the next one. */
interface Frame {
  rel: string;
  dir: HeldDir;
  entries: Entry[];
  pos: number;
}

/** Lists one page of `scopeRoot` (identity form) below the root `rootText`/`rootBytes`. */
export async function listPage(rootText: string, rootBytes: Buffer, scopeRoot: string, cursor: string | null, pageSize: number): Promise<Page> {
  if (!Number.isInteger(pageSize) || pageSize < 1) {
    throw new ConnectorError('invalid', `page size must be a positive integer, got ${pageSize}`);
  }
  const scope = normalizeRelativePath(scopeRoot);
  const after = cursor === null ? null : decodeCursor(cursor, scope);
  const where = `scope root ${JSON.stringify(scope)} (${scope === '' ? rootText : `${rootText}/${scope}`})`;
  let root: OpenRoot;
  try {
    root = await openRoot(rootText, rootBytes);
  } catch (err) {
    throw classify(err, where);
  }
  const walk = new PageWalk(pageSize);
  try {
    let scopeDir: HeldDir | 'missing' | 'not_directory';
    try {
      scopeDir = await locateDir(root, scope);
    } catch (err) {
      throw err instanceof ConnectorError ? err : classify(err, where);
    }
    if (scopeDir === 'missing') throw new ConnectorError('not_found', `${where} does not exist`);
    if (scopeDir === 'not_directory') throw new ConnectorError('invalid', `${where} is not a directory`);
    let entries: Entry[];
    try {
      entries = await readEntries(scopeDir);
    } catch (err) {
      await scopeDir.close().catch(() => {});
      throw classify(err, where);
    }
    walk.frames.push({ rel: scope, dir: scopeDir, entries, pos: 0 });
    if (after !== null) await walk.resume(after);
    await walk.run();
    return walk.page();
  } finally {
    await closeAll(walk.frames.map((f) => f.dir));
    await root.dir.close().catch(() => {});
  }
}

/** The state of one page's walk. */
class PageWalk {
  readonly frames: Frame[] = [];
  readonly #objects: ObjectInfo[] = [];
  readonly #skipped: SkippedEntry[] = [];
  readonly #pageSize: number;
  readonly #skipCap: number;
  #skippedAtLastObject = 0;
  /** Set when the page ended with more to list: the identity the next page resumes after. */
  #next: string | null = null;

  constructor(pageSize: number) {
    this.#pageSize = pageSize;
    this.#skipCap = Math.max(pageSize, MIN_SKIPPED_PER_PAGE);
  }

  page(): Page {
    return { objects: this.#objects, nextCursor: this.#next === null ? null : encodeCursor(this.#next), skipped: this.#skipped };
  }

  async run(): Promise<void> {
    while (this.frames.length > 0 && this.#next === null) {
      const top = this.frames[this.frames.length - 1];
      if (top.pos >= top.entries.length) {
        await this.frames.pop()!.dir.close();
        continue;
      }
      await this.#visit(top, top.entries[top.pos++]);
    }
  }

  /**
   * Positions the frames (holding only the scope frame) right after identity `after`: at each level,
   * skips the names up to the cursor's component and descends into the component's directory if it
   * still is one. A directory on the path that can no longer be listed is reported, not entered.
   */
  async resume(after: string): Promise<void> {
    const scope = this.frames[0].rel;
    const parts = (scope === '' ? after : after.slice(scope.length + 1)).split('/');
    for (let j = 0; j < parts.length; j++) {
      const frame = this.frames[j];
      frame.pos = upperBound(frame.entries, parts[j]);
      if (j === parts.length - 1) return;
      const entry = frame.entries[frame.pos - 1];
      if (entry === undefined || entry.name !== parts[j]) return; // gone: nothing below it to resume in
      const rel = joinIdentity(frame.rel, entry.name);
      if (entry.type === 'symlink') return this.#skip(rel, 'symlink');
      if (entry.type !== 'dir' && entry.type !== 'unknown') return;
      const child = await this.#openChild(frame, entry, rel, 'symlink');
      if (child === null) return;
      this.frames.push(child);
    }
  }

  async #visit(top: Frame, entry: Entry): Promise<void> {
    const rel = joinIdentity(top.rel, entry.name);
    if (entry.type === 'symlink') return this.#skip(rel, 'symlink');
    if (entry.type === 'special') return this.#skip(rel, 'special_file', entry.special);
    if (entry.type === 'dir') {
      const child = await this.#openChild(top, entry, rel, 'dispatch');
      if (child !== null) this.frames.push(child);
      return;
    }
    let st: Stats;
    try {
      st = await lstatAt(top.dir, entry.bytes);
    } catch (err) {
      const code = errno(err);
      if (code === 'ENOENT') return; // deleted since the directory was read
      if (code === 'EACCES' || code === 'EPERM') {
        // The directory can be read but not searched: none of its entries can be inspected.
        top.pos = top.entries.length;
        return this.#skip(top.rel, 'unreadable_directory', `${code} (its entries cannot be inspected)`);
      }
      throw classify(err, JSON.stringify(rel));
    }
    await this.#dispatch(top, entry, rel, st);
  }

  /** Handles an entry by what lstat says it is now. */
  async #dispatch(top: Frame, entry: Entry, rel: string, st: Stats): Promise<void> {
    if (st.isFile()) return this.#object(rel, st);
    if (st.isSymbolicLink()) return this.#skip(rel, 'symlink');
    if (st.isDirectory()) {
      const child = await this.#openChild(top, entry, rel, 'report');
      if (child !== null) this.frames.push(child);
      return;
    }
    return this.#skip(rel, 'special_file', specialKind(st));
  }

  /**
   * Opens and reads a child directory without following a symlink; null (reported) when it cannot be
   * listed. `notDir` says what to do with an entry that is no longer a directory: handle it by what it
   * is now (`dispatch`, during the walk), report only a symlink (`symlink`, while resuming: the entry
   * lies behind the cursor), or report it as changed (`report`, when lstat already said directory).
   */
  async #openChild(parent: Frame, entry: Entry, rel: string, notDir: 'dispatch' | 'symlink' | 'report'): Promise<Frame | null> {
    let dir: HeldDir;
    try {
      dir = await openDirAt(parent.dir, entry.bytes);
    } catch (err) {
      const code = errno(err);
      if (code === 'ENOENT') return null;
      if (code === 'EACCES' || code === 'EPERM') {
        this.#skip(rel, 'unreadable_directory', code);
        return null;
      }
      if ((code === 'ENOTDIR' || code === 'ELOOP') && notDir !== 'report') {
        // Not a directory any more (swapped for a symlink or a file since it was read): look again.
        let st: Stats;
        try {
          st = await lstatAt(parent.dir, entry.bytes);
        } catch (e) {
          if (errno(e) === 'ENOENT') return null;
          throw classify(e, JSON.stringify(rel));
        }
        if (st.isDirectory()) this.#skip(rel, 'unreadable_directory', `${code} (it changed while being listed)`);
        else if (notDir === 'dispatch') await this.#dispatch(parent, entry, rel, st);
        else if (st.isSymbolicLink()) this.#skip(rel, 'symlink');
        return null;
      }
      if (code === 'ENOTDIR' || code === 'ELOOP') {
        this.#skip(rel, 'unreadable_directory', `${code} (it changed while being listed)`);
        return null;
      }
      throw classify(err, JSON.stringify(rel));
    }
    try {
      return { rel, dir, entries: await readEntries(dir), pos: 0 };
    } catch (err) {
      await dir.close().catch(() => {});
      const code = errno(err);
      if (code === 'ENOENT') return null; // removed while being read
      if (code === 'EACCES' || code === 'EPERM') {
        this.#skip(rel, 'unreadable_directory', code);
        return null;
      }
      throw classify(err, JSON.stringify(rel));
    }
  }

  #object(rel: string, st: Stats): void {
    if (this.#objects.length === this.#pageSize) {
      // Peeked one object beyond the page: what was met after the last object is the next page's.
      this.#skipped.length = this.#skippedAtLastObject;
      this.#next = this.#objects[this.#objects.length - 1].identity;
      return;
    }
    this.#objects.push({ identity: rel, size: st.size, mtime: st.mtime.toISOString() });
    this.#skippedAtLastObject = this.#skipped.length;
  }

  #skip(identity: string, reason: SkippedEntry['reason'], detail?: string): void {
    this.#skipped.push(detail === undefined ? { identity, reason } : { identity, reason, detail });
    if (this.#skipped.length >= this.#skipCap) this.#next = identity;
  }
}

/** Entries of a held directory, sorted; types from the directory itself where it records them. */
async function readEntries(dir: HeldDir): Promise<Entry[]> {
  const entries: Entry[] = [];
  for (const d of await readdirHeld(dir)) {
    // Names as bytes: a name that is not valid UTF-8 keeps them (nameFromBytes), so it can be opened.
    const entry: Entry = { name: nameFromBytes(d.name), bytes: d.name, type: 'unknown' };
    if (d.isFile()) entry.type = 'file';
    else if (d.isDirectory()) entry.type = 'dir';
    else if (d.isSymbolicLink()) entry.type = 'symlink';
    else if (d.isFIFO() || d.isSocket() || d.isBlockDevice() || d.isCharacterDevice()) {
      entry.type = 'special';
      entry.special = d.isFIFO() ? 'fifo' : d.isSocket() ? 'socket' : d.isBlockDevice() ? 'block device' : 'character device';
    } // else: a filesystem without d_type; lstat decides
    entries.push(entry);
  }
  entries.sort((a, b) => compareNames(a.name, b.name));
  return entries;
}

function specialKind(st: Stats): string {
  return st.isFIFO() ? 'fifo' : st.isSocket() ? 'socket' : st.isBlockDevice() ? 'block device' : st.isCharacterDevice() ? 'character device' : 'unknown type';
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

/** Encodes the identity the next page resumes after as a cursor. */
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
