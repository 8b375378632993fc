/** Operating-system errors of the filesystem connector, mapped to ConnectorErrors the pipeline acts on. */
import { ConnectorError, type ConnectorErrorKind } from '../types.ts';

/** The `code` of a Node system error (`ENOENT`, ...), if it has one. */
export function errno(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}

/** The message of an error, or the value as text. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

const KINDS: Record<string, [ConnectorErrorKind, string]> = {
  ENOENT: ['not_found', 'does not exist'],
  ENOTDIR: ['not_found', 'does not exist (a parent is not a directory)'],
  EACCES: ['permission', 'is not accessible (permission denied)'],
  EPERM: ['permission', 'is not accessible (operation not permitted)'],
  EISDIR: ['invalid', 'is a directory, not a regular file'],
  ELOOP: ['invalid', 'has too many levels of symbolic links'],
  // Retrying cannot shorten a name: without this a too-long identity was retried as transient.
  ENAMETOOLONG: ['invalid', 'is too long for the filesystem (a name over 255 bytes or a path over 4,096)'],
};

/** Maps an operating-system error about `what` (an identity in quotes, or a described path) to a ConnectorError. */
export function classify(err: unknown, what: string): ConnectorError {
  if (err instanceof ConnectorError) return err;
  const code = errno(err);
  const [kind, text] = (code && KINDS[code]) || ['transient', `failed: ${messageOf(err)}`];
  return new ConnectorError(kind, `${what} ${text}`, { cause: err });
}

/** Maps an error about a quarantine destination: blocked paths are permanent, the rest transient. */
export function classifyDestination(err: unknown, dest: string): ConnectorError {
  if (err instanceof ConnectorError) return err;
  const code = errno(err);
  if (code === 'EACCES' || code === 'EPERM') {
    return new ConnectorError('permission', `quarantine destination ${dest} is not writable`, { cause: err });
  }
  if (code === 'ENAMETOOLONG') {
    return new ConnectorError('invalid', `quarantine destination ${dest} is too long for the filesystem`, { cause: err });
  }
  if (code === 'EEXIST' || code === 'ENOTDIR' || code === 'EISDIR' || code === 'ENOTEMPTY') {
    return new ConnectorError('invalid', `quarantine destination ${dest} is blocked by an existing entry (${code})`, { cause: err });
  }
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new ConnectorError('transient', `quarantine destination ${dest} has no space left (${code}); free space in the quarantine directory`, { cause: err });
  }
  return new ConnectorError('transient', `moving to quarantine destination ${dest} failed: ${messageOf(err)}`, { cause: err });
}
