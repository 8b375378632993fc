/** The identity step of every provider format: the default, and the checks any identity step must pass. */
import { normalizeRelativePath } from '../../connectors/identity.ts';
import { textProblem } from './fields.ts';
import { EventFormatError, shown } from './format-error.ts';
import type { IdentityOf } from './types.ts';

/** Longest object identity accepted, in bytes (UTF-8). */
export const MAX_IDENTITY_BYTES = 4096;

/**
 * The default identity step: the canonical relative path of `raw` (no `..`, not absolute, no empty or
 * `.` segments), which can never name anything outside the integration's root.
 */
export const canonicalIdentity: IdentityOf = (raw, where) => {
  if (Buffer.byteLength(raw) > MAX_IDENTITY_BYTES) throw new EventFormatError(`${where}: object identity longer than ${MAX_IDENTITY_BYTES} bytes`);
  let id: string;
  try {
    id = normalizeRelativePath(raw);
  } catch (err) {
    throw new EventFormatError(`${where}: ${(err as Error).message}`);
  }
  if (id === '') throw new EventFormatError(`${where}: object identity ${shown(raw)} names no object`);
  return id;
};

/**
 * `identityOf(raw, where)`, checked: not empty, at most MAX_IDENTITY_BYTES, storable by PostgreSQL; null
 * (skip the event) passes through.
 */
export function checkedIdentity(identityOf: IdentityOf, raw: string, where: string): string | null {
  const id = identityOf(raw, where);
  if (id === null) return null;
  if (typeof id !== 'string' || id === '') throw new EventFormatError(`${where}: object identity ${shown(raw)} names no object`);
  if (Buffer.byteLength(id) > MAX_IDENTITY_BYTES) throw new EventFormatError(`${where}: object identity longer than ${MAX_IDENTITY_BYTES} bytes`);
  const problem = textProblem(id);
  if (problem) throw new EventFormatError(`${where}: object identity ${problem}`);
  return id;
}
