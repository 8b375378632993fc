/**
 * The quarantine directory of a filesystem integration, and the directories below it.
 *
 * Its real path is resolved once (creating it with mode 0700 when missing) and refused unless it lies
 * outside the integration root (and does not contain it), is owned by the service user and is not
 * writable by group or others: then nobody but the service can plant a symlink in it. Every use opens
 * it again component by component from `/` without following symlinks, re-checks owner and mode, and
 * creates and enters each level below it the same way, so a symlink found anywhere in it is refused.
 */
import fs from 'node:fs';
import path from 'node:path';
import { nameFromBytes } from '../identity.ts';
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
  const realOrNull = (p: string) => {
    try {
      return fs.realpathSync(p);
    } catch {
      return null;
    }
  };
  const real = realOrNull(quarantineDir);
  if (real === null) return null;
  return insideProblem(real, realOrNull(root) ?? path.resolve(root)) ?? ownerProblem(quarantineDir, fs.statSync(real));
}

/** The quarantine directory of one connector. */
export class QuarantineArea {
  readonly #text: string;
  #real: Promise<Buffer> | undefined;

  constructor(dir: string) {
    this.#text = textPath(path.resolve(dir));
  }

  /** Absolute path of the quarantine directory as configured. */
  get path(): string {
    return this.#text;
  }

  /** Opens the quarantine directory for one operation, checked against the held integration root. */
  async open(root: OpenRoot): Promise<HeldDir> {
    const lexical = insideProblem(this.#text, root.text);
    if (lexical) throw new ConnectorError('configuration', lexical);
    const real = await this.#resolve();
    const realText = nameFromBytes(real);
    const realRoot = await root.real();
    if (isBelowOrAt(real, realRoot) || isBelowOrAt(realRoot, real) || isBelowOrAt(real, root.bytes)) {
      throw new ConnectorError('configuration', insideProblem(realText, nameFromBytes(realRoot)) ?? `quarantine directory ${this.#text} (${realText}) overlaps the integration root ${root.text}; ${CHOOSE_OUTSIDE}`);
    }
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
