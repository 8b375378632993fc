/** Remediation by deletion: unlinks the regular file an identity names, by name inside its held directory. */
import { ConnectorError, type ActionResult } from '../types.ts';
import { unlinkAt } from './descriptors.ts';
import { classify, errno } from './errors.ts';
import { objectIdentity, withEntry, withRoot } from './read.ts';

const GONE: ActionResult = { status: 'already_done', detail: 'file does not exist' };

/**
 * `Connector.remove`: deletes the file the identity resolves to (the bytes `open` serves). The unlink
 * names the entry inside its held parent directory, so whatever is renamed meanwhile it removes a name
 * inside the root, never a file outside it (a symlink swapped in is itself removed, not its target).
 */
export async function removeObject(rootText: string, rootBytes: Buffer, identity: string): Promise<ActionResult> {
  const id = objectIdentity(identity);
  return withRoot(rootText, rootBytes, (root) =>
    withEntry(root, id, async (entry) => {
      if (entry === null) return GONE;
      if (!entry.stats.isFile()) throw new ConnectorError('invalid', `${JSON.stringify(id)} is not a regular file`);
      try {
        await unlinkAt(entry.parent, entry.name);
      } catch (err) {
        if (errno(err) === 'ENOENT') return GONE;
        throw classify(err, JSON.stringify(id));
      }
      return { status: 'done' };
    }),
  );
}
