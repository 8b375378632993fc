/**
 * The host-side check of a filesystem integration's settings before it is created: the root is an
 * existing directory, the quarantine directory may serve it and stays out of every other filesystem
 * integration's root, and the root covers no other integration's quarantine directory.
 * `dsx-connect integration add` and the GraphQL `createIntegration` mutation run the same check, with
 * the same words. The database checks
 * only what it can see (an absolute path, a quarantine outside the root, lexically).
 *
 * The check runs where the command or the API server runs. Workers on other hosts read the same path
 * on their own disks: a root that exists here can still be missing there (a scan of it then fails its
 * listing with the connector's error), and a root missing here may exist only on the workers' hosts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { FilesystemRoot } from '../../db/sql/catalog.ts';
import { relativeInside } from './paths.ts';
import { defaultQuarantineDir, quarantineDirProblem, quarantineOtherRootsProblem, type OtherRoot } from './quarantine-area.ts';

/** Why a filesystem integration's settings cannot be used from this host, and what to do. */
export interface SettingsProblem {
  message: string;
  hint?: string;
}

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** Another filesystem integration: its root, and the quarantine directory its connector uses. */
export interface FilesystemNeighbour extends OtherRoot {
  quarantineDir: string;
}

/**
 * The existing filesystem integrations (filesystemRoots in src/db/sql/catalog.ts) with the quarantine
 * directory each one's connector uses: its quarantine_dir, or the default under `dataDir`
 * (`DSX_DATA_DIR`), as the connector registry decides. `exceptId` leaves out the integration itself.
 */
export function filesystemNeighbours(rows: readonly FilesystemRoot[], dataDir: string, exceptId?: number): FilesystemNeighbour[] {
  return rows
    .filter((r) => r.id !== exceptId)
    .map((r) => ({ id: r.id, name: r.name, root: r.root, quarantineDir: r.quarantine_dir ?? defaultQuarantineDir(dataDir, r.id) }));
}

function realOr(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

function coverage(root: string, q: string): 'contains' | 'is inside' | null {
  if (relativeInside(root, q) !== null) return 'contains';
  if (relativeInside(q, root) !== null) return 'is inside';
  return null;
}

/** Why the new root covers (or lies inside) another integration's quarantine directory, lexically or by real path, or null. */
function rootCoversQuarantine(root: string, others: readonly FilesystemNeighbour[]): string | null {
  for (const o of others) {
    if (!path.isAbsolute(o.quarantineDir)) continue;
    const q = path.resolve(o.quarantineDir);
    const how = coverage(path.resolve(root), q) ?? coverage(realOr(root), realOr(q));
    if (how) {
      return `filesystem root ${root} ${how} the quarantine directory ${q} of filesystem integration ${o.name} (id ${o.id}), whose evidence this share's users could then tamper with; choose a root that does not overlap it, or first give that integration a quarantine_dir outside every root`;
    }
  }
  return null;
}

/**
 * Why `settings` (`root`, `quarantine_dir`) cannot serve a filesystem integration on this host, or null.
 * `others` are the other filesystem integrations (filesystemNeighbours): the quarantine directory must
 * stay out of their roots, and the root out of their quarantine directories. `dataDir` (`DSX_DATA_DIR`)
 * places the default quarantine when the settings give none. A root that is not an absolute path is
 * left to the database, which refuses it with its own message.
 */
export function filesystemSettingsProblem(settings: Record<string, unknown>, others: readonly FilesystemNeighbour[] = [], dataDir?: string): SettingsProblem | null {
  const root = settings.root;
  if (typeof root !== 'string' || !path.isAbsolute(root)) return null;
  if (!isDirectory(root)) {
    return {
      message: `filesystem root ${root} is not an existing directory on host ${os.hostname()}`,
      hint: 'create it, or give the directory as this host sees it (the check runs where the command or API server runs; the workers must see the same path)',
    };
  }
  if (settings.quarantine_dir !== undefined) {
    const q = settings.quarantine_dir;
    const problem = typeof q === 'string' ? (quarantineDirProblem(root, q) ?? quarantineOtherRootsProblem(q, others)) : 'quarantine_dir must be a string (an absolute path)';
    if (problem) return { message: problem };
  } else if (dataDir !== undefined) {
    // The id, and so the default's last level, is not known before the insert: check the level above.
    const area = path.join(dataDir, 'quarantine');
    const shown = path.join(area, '<integration id>');
    for (const o of others) {
      if (quarantineOtherRootsProblem(area, [o]) !== null) {
        return {
          message: `the default quarantine directory ${shown} would overlap the root ${o.root} of filesystem integration ${o.name} (id ${o.id}), whose share users could tamper with it; give a quarantine directory outside every filesystem integration's root (--quarantine, settings.quarantine_dir)`,
        };
      }
    }
  }
  const covers = rootCoversQuarantine(root, others);
  if (covers) return { message: covers };
  return null;
}
