/**
 * Path arithmetic of the filesystem connector, on text (identity form, see identity.ts) and on bytes.
 * Nothing here touches the filesystem.
 */
import path from 'node:path';
import { bytesFromName, nameFromBytes } from '../identity.ts';

/** Path of `target` relative to `base` in identity form, `""` for base itself, null when outside. */
export function relativeInside(base: string, target: string): string | null {
  const rel = path.relative(base, target);
  if (rel === '') return '';
  if (rel === '..' || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel)) return null;
  return rel.split(path.sep).join('/');
}

/**
 * An absolute path given as text in identity form: bytes of names that are not valid UTF-8 kept as
 * escapes (nameFromBytes), so it prints, compares and maps back to the same bytes.
 */
export function textPath(p: string): string {
  return nameFromBytes(Buffer.from(p, 'utf8'));
}

/** The components of a canonical identity as the bytes the filesystem holds (`""` has none). */
export function componentsOf(identity: string): Buffer[] {
  return identity === '' ? [] : identity.split('/').map((c) => bytesFromName(c));
}

/** `path` with the leading `dir` removed (`/`-separated bytes), `""` for dir itself, null when not below it. */
export function stripDir(p: Buffer, dir: Buffer): Buffer | null {
  if (dir.length === 1 && dir[0] === 0x2f) return p[0] === 0x2f ? p.subarray(1) : null;
  const base = dir.at(-1) === 0x2f ? dir.subarray(0, -1) : dir;
  if (p.length < base.length || !p.subarray(0, base.length).equals(base)) return null;
  if (p.length === base.length) return Buffer.alloc(0);
  return p[base.length] === 0x2f ? p.subarray(base.length + 1) : null;
}

/** True when absolute path `p` is `dir` or lies below it (bytes, no resolution). */
export function isBelowOrAt(p: Buffer, dir: Buffer): boolean {
  return stripDir(p, dir) !== null;
}

/** Splits `/`-separated bytes into components (empty ones dropped). */
export function splitBytes(p: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= p.length; i++) {
    if (i === p.length || p[i] === 0x2f) {
      if (i > start) out.push(p.subarray(start, i));
      start = i + 1;
    }
  }
  return out;
}
