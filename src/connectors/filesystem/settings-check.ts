/**
 * The host-side check of a filesystem integration's settings before it is created: the root is an
 * existing directory and the quarantine directory may serve it. `dsx-connect integration add` and the
 * GraphQL `createIntegration` mutation run the same check, with the same words. The database checks
 * only what it can see (an absolute path, a quarantine outside the root, lexically).
 *
 * The check runs where the command or the API server runs. Workers on other hosts read the same path
 * on their own disks: a root that exists here can still be missing there (a scan of it then fails its
 * listing with the connector's error), and a root missing here may exist only on the workers' hosts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { quarantineDirProblem } from './quarantine-area.ts';

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

/**
 * Why `settings` (`root`, `quarantine_dir`) cannot serve a filesystem integration on this host, or null.
 * A root that is not an absolute path is left to the database, which refuses it with its own message.
 */
export function filesystemSettingsProblem(settings: Record<string, unknown>): SettingsProblem | null {
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
    const problem = typeof q === 'string' ? quarantineDirProblem(root, q) : 'quarantine_dir must be a string (an absolute path)';
    if (problem) return { message: problem };
  }
  return null;
}
