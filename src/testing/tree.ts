/**
 * Generates a directory tree to scan: nested directories, unicode and space-containing names, empty
 * files, a few EICAR files and one password-protected zip. Used by the demo of `npm start` and by tests,
 * which assert the exact counts it returns.
 */
import fs from 'node:fs';
import path from 'node:path';
import { EICAR_TEST_STRING } from '../connectors/eicar.ts';
import { encryptedZip } from './fixtures.ts';

export interface TreeCounts {
  files: number;
  empty: number;
  eicar: number;
  encrypted: number;
  /** Files expected to be clean (everything else). */
  clean: number;
  /** Relative paths of the EICAR files. */
  eicarPaths: string[];
}

const DIR_NAMES = ['alpha', 'beta dir', 'γάμμα', '日本語', 'delta', 'ε psilon'];

/** Writes `files` files under `dir` (created if needed); returns what was written. */
export function generateTree(dir: string, opts: { files: number; eicar?: number; empty?: number; encrypted?: boolean }): TreeCounts {
  const eicar = opts.eicar ?? 3;
  const empty = opts.empty ?? 5;
  const encrypted = opts.encrypted === false ? 0 : 1;
  const counts: TreeCounts = { files: 0, empty: 0, eicar: 0, encrypted: 0, clean: 0, eicarPaths: [] };
  fs.mkdirSync(dir, { recursive: true });
  for (let i = 0; i < opts.files; i++) {
    // Up to three levels of nesting, spread over many directories.
    const d1 = DIR_NAMES[i % DIR_NAMES.length]!;
    const d2 = `sub ${Math.floor(i / 7) % 9}`;
    const d3 = i % 3 === 0 ? `deep-${i % 5}` : '';
    const rel = path.join(d1, d2, d3);
    fs.mkdirSync(path.join(dir, rel), { recursive: true });
    let name: string;
    let content: Buffer | string;
    if (counts.encrypted < encrypted) {
      name = `secret archive ${i}.zip`;
      content = encryptedZip();
      counts.encrypted++;
    } else if (counts.eicar < eicar) {
      name = `eicar ${i}.com`;
      content = EICAR_TEST_STRING;
      counts.eicar++;
      counts.eicarPaths.push(path.join(rel, name).split(path.sep).join('/'));
    } else if (counts.empty < empty) {
      name = `empty-${i}.txt`;
      content = '';
      counts.empty++;
    } else {
      name = i % 4 === 0 ? `файл ${i}.txt` : i % 4 === 1 ? `report ${i}.csv` : `file-${i}.dat`;
      content = `object ${i}\n`.repeat(1 + (i % 50));
    }
    fs.writeFileSync(path.join(dir, rel, name), content);
    counts.files++;
  }
  counts.clean = counts.files - counts.eicar - counts.encrypted;
  return counts;
}
