/**
 * The quarantine directory of a filesystem integration, and the directories below it.
 *
 * Its real path is resolved once (creating it with mode 0700 when missing) and refused unless it lies
 * outside the integration root and outside the root of every other filesystem integration (and
 * contains none of them), is owned by the service user and is not writable by group or others: then
 * no share user, of this share or another, can plant a symlink in it or tamper with the evidence.
 * Every use opens it again component by component from `/` without following symlinks, re-checks
 * owner and mode, and creates and enters each level below it the same way, so a symlink found
 * anywhere in it is refused.
 */
import fs from 'node:fs';
import path from 'node:path';
import { bytesFromName, nameFromBytes } from '../identity.ts';
import { ConnectorError } from '../types.ts';
import { closeAll, lstatAt, mkdirAt, openDirAt, openDirPath, type HeldDir } from './descriptors.ts';
import { classifyDestination, errno } from './errors.ts';
import { isBelowOrAt, relativeInside, splitBytes, textPath } from './paths.ts';
import type { OpenRoot } from './resolve.ts';

const DOT = Buffer.from('.');

/** The default quarantine: outside every share, under the service's data directory (`DSX_DATA_DIR`). */
export function defaultQuarantineDir(dataDir: string, integrationId: number): string {
  return path.join(dataDir, 'quarantine', String(integrationId));
}

const CHOOSE_OUTSIDE = 'choose a directory outside the share (the default is <DSX_DATA_DIR>/quarantine/<integration id>)';
const CHOOSE_OUTSIDE_EVERY = 'choose a directory outside every filesystem integration\'s root (the default is <DSX_DATA_DIR>/quarantine/<integration id>)';

/** The root of another filesystem integration, which a quarantine directory must stay out of. */
export interface OtherRoot {
  id: number;
  name: string;
  root: string;
}

const nameOf = (o: OtherRoot) => `${o.name} (id ${o.id})`;

/** Why the quarantine directory `q` overlaps `root`, the root of the other integration `o`, or null. */
function otherProblem(q: string, root: string, o: OtherRoot): string | null {
  if (relativeInside(root, q) !== null) return `quarantine directory ${q} is inside the root ${root} of filesystem integration ${nameOf(o)}, whose share users could tamper with it; ${CHOOSE_OUTSIDE_EVERY}`;
  if (relativeInside(q, root) !== null) return `quarantine directory ${q} contains the root ${root} of filesystem integration ${nameOf(o)}; ${CHOOSE_OUTSIDE_EVERY}`;
  return null;
}

function realOrNull(p: string): string | null {
  try {
    return fs.realpathSync(p);
  } catch {
    return null;
  }
}

/**
 * The real path of `p` as far as it exists: its deepest existing ancestor resolved, the rest appended
 * (a quarantine directory the worker has not created yet is reached through its existing parents).
 */
function realAsFarAsExists(p: string): string {
  const rest: string[] = [];
  for (let dir = path.resolve(p); ; dir = path.dirname(dir)) {
    const real = realOrNull(dir);
    if (real !== null) return path.join(real, ...rest);
    if (path.dirname(dir) === dir) return path.resolve(p);
    rest.unshift(path.basename(dir));
  }
}

/**
 * Why `quarantineDir` overlaps the root of one of `others` (filesystem integrations other than its
 * own), lexically or by real path (as far as it exists), or null. A root that does not exist is
 * compared as written.
 */
export function quarantineOtherRootsProblem(quarantineDir: string, others: readonly OtherRoot[]): string | null {
  const q = path.resolve(quarantineDir);
  const realQ = realAsFarAsExists(q);
  for (const o of others) {
    if (!path.isAbsolute(o.root)) continue; // the database refuses such a root; nothing to overlap
    const root = path.resolve(o.root);
    const problem = otherProblem(q, root, o) ?? otherProblem(realQ, realOrNull(root) ?? root, o);
    if (problem) return problem;
  }
  return null;
}

function insideProblem(q: string, root: string): string | null {
  if (relativeInside(root, q) !== null) return `quarantine directory ${q} is inside the integration root ${root}, where share users could tamper with it; ${CHOOSE_OUTSIDE}`;
  if (relativeInside(q, root) !== null) return `quarantine directory ${q} contains the integration root ${root}; ${CHOOSE_OUTSIDE}`;
  return null;
}

function ownerProblem(q: string, st: fs.Stats): string | null {
  if (!st.isDirectory()) return `quarantine directory ${q} exists and is not a directory; choose another path`;
  const euid = process.geteuid?.();
  if (euid !== undefined && st.uid !== euid) {
    return `quarantine directory ${q} is owned by uid ${st.uid}, not by the service user (uid ${euid}); chown it to the user the worker runs as`;
  }
  if ((st.mode & 0o022) !== 0) {
    return `quarantine directory ${q} is writable by group or others (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}); run chmod go-w on it or choose another directory`;
  }
  return null;
}

/**
 * Why `quarantineDir` cannot serve an integration rooted at `root`, or null (for `integration add`;
 * the connector checks again whenever it quarantines). A directory that does not exist yet is fine:
 * the worker creates it with mode 0700.
 */
export function quarantineDirProblem(root: string, quarantineDir: string): string | null {
  if (!path.isAbsolute(quarantineDir)) return `quarantine directory ${quarantineDir} must be an absolute path`;
  const lexical = insideProblem(path.resolve(quarantineDir), path.resolve(root));
  if (lexical) return lexical;
  const real = realOrNull(quarantineDir);
  if (real === null) return null;
  return insideProblem(real, realOrNull(root) ?? path.resolve(root)) ?? ownerProblem(quarantineDir, fs.statSync(real));
}

/** The quarantine directory of one connector. */
export class QuarantineArea {
  readonly #text: string;
  readonly #others: readonly OtherRoot[];
  #real: Promise<Buffer> | undefined;

  /** `others`: the roots of the other filesystem integrations, which the directory must stay out of too. */
  constructor(dir: string, others: readonly OtherRoot[] = []) {
    this.#text = textPath(path.resolve(dir));
    this.#others = others.filter((o) => path.isAbsolute(o.root));
  }

  /** Absolute path of the quarantine directory as configured. */
  get path(): string {
    return this.#text;
  }

  /**
   * Opens the quarantine directory for one operation, checked against the held integration root and
   * the other filesystem integrations' roots (lexically before anything is created, then by real path).
   */
  async open(root: OpenRoot): Promise<HeldDir> {
    const lexical = insideProblem(this.#text, root.text) ?? this.#othersLexically();
    if (lexical) throw new ConnectorError('configuration', lexical);
    const real = await this.#resolve();
    const realText = nameFromBytes(real);
    const realRoot = await root.real();
    if (isBelowOrAt(real, realRoot) || isBelowOrAt(realRoot, real) || isBelowOrAt(real, root.bytes)) {
      throw new ConnectorError('configuration', insideProblem(realText, nameFromBytes(realRoot)) ?? `quarantine directory ${this.#text} (${realText}) overlaps the integration root ${root.text}; ${CHOOSE_OUTSIDE}`);
    }
    const otherReal = await this.#othersByRealPath(real);
    if (otherReal) throw new ConnectorError('configuration', otherReal);
    let dir = await openDirPath('/');
    try {
      for (const name of splitBytes(real)) {
        const next = await openDirAt(dir, name).catch(async (err: unknown) => {
          const code = errno(err);
          if (code === 'ENOENT') {
            this.#real = undefined; // removed: created again on the next try
            throw new ConnectorError('transient', `quarantine directory ${this.#text} disappeared; it is created again on retry`, { cause: err });
          }
          if (code === 'ENOTDIR' || code === 'ELOOP') {
            throw new ConnectorError('configuration', `quarantine directory ${this.#text} (${realText}) changed since it was resolved: a component is now a symbolic link or not a directory; check who can write to its parent directories`, { cause: err });
          }
          throw classifyDestination(err, this.#text);
        });
        await dir.close();
        dir = next;
      }
      const problem = ownerProblem(this.#text, await dir.stat());
      if (problem) throw new ConnectorError('configuration', problem);
      return dir;
    } catch (err) {
      await dir.close().catch(() => {});
      throw err;
    }
  }

  #othersLexically(): string | null {
    for (const o of this.#others) {
      const problem = otherProblem(this.#text, textPath(path.resolve(o.root)), o);
      if (problem) return problem;
    }
    return null;
  }

  /** The other roots compared by real path (a root that cannot be resolved, e.g. missing, as written). */
  async #othersByRealPath(real: Buffer): Promise<string | null> {
    const realText = nameFromBytes(real);
    for (const o of this.#others) {
      const written = bytesFromName(textPath(path.resolve(o.root)));
      const resolved = await fs.promises.realpath(o.root, { encoding: 'buffer' }).catch(() => written);
      for (const other of [resolved, written]) {
        if (isBelowOrAt(real, other) || isBelowOrAt(other, real)) {
          return otherProblem(realText, nameFromBytes(other), o) ?? `quarantine directory ${this.#text} (${realText}) is the root ${o.root} of filesystem integration ${nameOf(o)}; ${CHOOSE_OUTSIDE_EVERY}`;
        }
      }
    }
    return null;
  }

  #resolve(): Promise<Buffer> {
    this.#real ??= (async () => {
      try {
        // Recursive mkdir applies the mode to every level it creates and leaves existing ones alone.
        await fs.promises.mkdir(this.#text, { recursive: true, mode: 0o700 });
        return await fs.promises.realpath(this.#text, { encoding: 'buffer' });
      } catch (err) {
        throw classifyDestination(err, this.#text);
      }
    })();
    this.#real.catch(() => {
      this.#real = undefined;
    });
    return this.#real;
  }
}

/**
 * Enters (creating them when `create`) the directories `dirs` below the held quarantine directory,
 * never following a symlink: one found at any level is refused as `escape`. Returns the last level (a
 * fresh handle), or null when `create` is false and a level does not exist.
 */
export async function enterLevels(q: HeldDir, qText: string, dirs: Buffer[], create: boolean): Promise<HeldDir | null> {
  const chain: HeldDir[] = [];
  const top = () => chain.at(-1) ?? q;
  let shown = qText;
  try {
    for (const name of dirs) {
      shown = `${shown}/${nameFromBytes(name)}`;
      if (create) {
        await mkdirAt(top(), name, 0o700).catch((err: unknown) => {
          if (errno(err) !== 'EEXIST') throw classifyDestination(err, shown);
        });
      }
      let next: HeldDir;
      try {
        next = await openDirAt(top(), name);
      } catch (err) {
        const code = errno(err);
        if (code === 'ENOENT' && !create) return null;
        if (code === 'ENOTDIR' || code === 'ELOOP') {
          const st = await lstatAt(top(), name).catch(() => null);
          if (st?.isSymbolicLink()) {
            throw new ConnectorError('escape', `quarantine path ${shown} is a symbolic link; refusing to follow it (only the service should write in the quarantine directory: remove the link and check who planted it)`, { cause: err });
          }
        }
        throw classifyDestination(err, shown);
      }
      chain.push(next);
      const problem = ownerProblem(shown, await next.stat());
      if (problem) throw new ConnectorError('configuration', problem);
    }
    return chain.length > 0 ? chain.pop()! : await openDirAt(q, DOT);
  } finally {
    await closeAll(chain);
  }
}
