/**
 * Pure helpers for object identities and scope roots: canonical relative POSIX paths that can never
 * name anything outside their integration root.
 */
import { ConnectorError } from './types.ts';

/**
 * Canonical form of a user-given scope root or object identity: `/`-separated, no leading or trailing
 * slash, empty and `.` segments dropped. `""` (or `"."`) means the integration root itself.
 *
 * Throws `ConnectorError('escape')` for a `..` segment, an absolute path or a NUL byte. On POSIX a
 * backslash is an ordinary file-name character and is kept; on Windows it is a separator.
 */
export function normalizeRelativePath(input: string): string {
  if (typeof input !== 'string') {
    throw new ConnectorError('invalid', `path must be a string, got ${typeof input}`);
  }
  const shown = JSON.stringify(input);
  if (input.includes('\0')) throw new ConnectorError('escape', `path ${shown} contains a NUL byte`);
  const text = process.platform === 'win32' ? input.replaceAll('\\', '/') : input;
  if (text.startsWith('/') || (process.platform === 'win32' && /^[A-Za-z]:/.test(text))) {
    throw new ConnectorError('escape', `path ${shown} is absolute; expected a path relative to the integration root`);
  }
  const segments: string[] = [];
  for (const segment of text.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') throw new ConnectorError('escape', `path ${shown} contains a ".." segment`);
    segments.push(segment);
  }
  return segments.join('/');
}

/**
 * True when canonical `identity` is `root` itself or lies below it. `""` contains everything;
 * `"a/b"` contains `"a/b/c"` but not `"a/bc"`. Both arguments must already be canonical
 * (see {@link normalizeRelativePath}).
 */
export function isWithin(root: string, identity: string): boolean {
  if (root === '') return true;
  return identity === root || identity.startsWith(`${root}/`);
}

/** Joins canonical relative paths, skipping empty ones (`joinIdentity("", "a")` is `"a"`). */
export function joinIdentity(...parts: string[]): string {
  return parts.filter((p) => p !== '').join('/');
}
