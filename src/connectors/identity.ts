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

/*
 * File names are bytes; identities are text (they live in PostgreSQL `text` and JSON). Node decodes a
 * name that is not valid UTF-8 lossily (each bad byte becomes U+FFFD), and that text names no file:
 * such files, and everything below such directories, were silently skipped by enumeration. Instead,
 * each byte of a name that is not part of a valid UTF-8 sequence is kept as one private-use character
 * U+F700 + byte (U+F780..U+F7FF; only bytes >= 0x80 can be invalid). A valid name that itself contains
 * U+F780..U+F7FF gets those characters' bytes escaped the same way, so the mapping stays one-to-one and
 * `bytesFromName(nameFromBytes(b))` is `b` for every byte string. Names that are valid UTF-8 (all but
 * a vanishing few) are their own identity, unchanged. Escapes never produce `/`, `.` or NUL, so the
 * path checks of normalizeRelativePath hold for the bytes too.
 */
const ESCAPE_BASE = 0xf700;
const ESCAPED = /[\uF780-\uF7FF]/;

/** Length of the valid UTF-8 sequence starting at `i` (RFC 3629: no overlongs, no surrogates), or 0. */
function utf8SequenceLength(b: Uint8Array, i: number): number {
  const b0 = b[i]!;
  if (b0 < 0x80) return 1;
  const n = b0 >= 0xc2 && b0 <= 0xdf ? 2 : b0 >= 0xe0 && b0 <= 0xef ? 3 : b0 >= 0xf0 && b0 <= 0xf4 ? 4 : 0;
  if (n === 0 || i + n > b.length) return 0;
  for (let k = 1; k < n; k++) if ((b[i + k]! & 0xc0) !== 0x80) return 0;
  const b1 = b[i + 1]!;
  if ((b0 === 0xe0 && b1 < 0xa0) || (b0 === 0xed && b1 > 0x9f) || (b0 === 0xf0 && b1 < 0x90) || (b0 === 0xf4 && b1 > 0x8f)) return 0;
  return n;
}

/** The text form of a file name or path given as bytes (see above); plain UTF-8 decoding when valid. */
export function nameFromBytes(bytes: Uint8Array): string {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const plain = buf.toString('utf8');
  if (!plain.includes('\uFFFD') && !ESCAPED.test(plain)) return plain;
  let out = '';
  for (let i = 0; i < buf.length; ) {
    const n = utf8SequenceLength(buf, i);
    const text = n === 0 ? '' : buf.toString('utf8', i, i + n);
    if (n === 0 || ESCAPED.test(text)) {
      const end = n === 0 ? i + 1 : i + n;
      for (; i < end; i++) out += String.fromCharCode(ESCAPE_BASE + buf[i]!);
    } else {
      out += text;
      i += n;
    }
  }
  return out;
}

/** The bytes a name or path in text form stands for: the inverse of {@link nameFromBytes}. */
export function bytesFromName(name: string): Buffer {
  if (!ESCAPED.test(name)) return Buffer.from(name, 'utf8');
  const parts: Buffer[] = [];
  let run = '';
  for (const ch of name) {
    const c = ch.codePointAt(0)!;
    if (c >= 0xf780 && c <= 0xf7ff) {
      if (run) parts.push(Buffer.from(run, 'utf8'));
      run = '';
      parts.push(Buffer.of(c - ESCAPE_BASE));
    } else {
      run += ch;
    }
  }
  if (run) parts.push(Buffer.from(run, 'utf8'));
  return Buffer.concat(parts);
}

/** A path in text form as `fs` takes it: the string itself, or its bytes when it holds escaped bytes. */
export function fsPath(name: string): string | Buffer {
  return ESCAPED.test(name) ? bytesFromName(name) : name;
}
