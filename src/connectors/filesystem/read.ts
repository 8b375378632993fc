/**
 * Reads: `open` and `stat` of one identity, through held directory descriptors (resolve.ts). The file
 * opened is checked with fstat to be a regular file, so the bytes served are those of a regular file
 * inside the root, whatever was renamed or swapped meanwhile.
 */
import type { Stats } from 'node:fs';
import type fs from 'node:fs/promises';
import { normalizeRelativePath } from '../identity.ts';
import { ConnectorError, type ObjectInfo, type OpenedObject } from '../types.ts';
import { openFileAt } from './descriptors.ts';
import { classify, errno, messageOf } from './errors.ts';
import { locateEntry, openRoot, type Located, type OpenRoot } from './resolve.ts';

/** A canonical identity of an object: never the root itself. */
export function objectIdentity(identity: string): string {
  const id = normalizeRelativePath(identity);
  if (id === '') throw new ConnectorError('invalid', 'the integration root is a directory, not an object');
  return id;
}

/**
 * Runs `fn` with the root held open. A root that cannot be opened is `transient`: an unmounted share
 * may come back.
 */
export async function withRoot<T>(rootText: string, rootBytes: Buffer, fn: (root: OpenRoot) => Promise<T>): Promise<T> {
  let root: OpenRoot;
  try {
    root = await openRoot(rootText, rootBytes);
  } catch (err) {
    if (err instanceof ConnectorError) throw err;
    throw new ConnectorError('transient', `integration root ${rootText} is not accessible: ${messageOf(err)}`, { cause: err });
  }
  try {
    return await fn(root);
  } finally {
    await root.dir.close().catch(() => {});
  }
}

/** Runs `fn` with the entry an identity names (null when missing), releasing its directories after. */
export async function withEntry<T>(root: OpenRoot, id: string, fn: (entry: Located | null) => Promise<T>): Promise<T> {
  const entry = await locateEntry(root, id);
  try {
    return await fn(entry);
  } finally {
    await entry?.release();
  }
}

/**
 * Opens a regular file inside the root for reading (no symlink followed by the kernel, a FIFO never
 * blocks). The caller owns the handle. Throws not_found, invalid (not a regular file), escape, ...
 */
export async function openRegularFile(root: OpenRoot, id: string): Promise<OpenedFile> {
  return withEntry(root, id, (entry) => {
    if (entry === null) throw new ConnectorError('not_found', `${JSON.stringify(id)} does not exist`);
    return openLocated(entry, id);
  });
}

/** An open regular file and its fstat. */
export interface OpenedFile {
  fh: fs.FileHandle;
  st: Stats;
}

/** Opens a located entry for reading once it is (and still is, by fstat) a regular file. */
export async function openLocated(entry: Located, id: string): Promise<OpenedFile> {
  const shown = JSON.stringify(id);
  // Refused before opening: opening some special files (a tape, a FIFO) has side effects.
  if (!entry.stats.isFile()) throw new ConnectorError('invalid', `${shown} is not a regular file`);
  let fh: fs.FileHandle;
  try {
    fh = await openFileAt(entry.parent, entry.name);
  } catch (err) {
    if (errno(err) === 'ELOOP') throw new ConnectorError('transient', `${shown} changed into a symbolic link while opening`, { cause: err });
    throw classify(err, shown);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new ConnectorError('invalid', `${shown} is not a regular file`);
    return { fh, st };
  } catch (err) {
    await fh.close().catch(() => {});
    throw err instanceof ConnectorError ? err : classify(err, shown);
  }
}

/** `Connector.open`: a stream of the file's bytes and its size. */
export async function openObject(rootText: string, rootBytes: Buffer, identity: string): Promise<OpenedObject> {
  const id = objectIdentity(identity);
  const { fh, st } = await withRoot(rootText, rootBytes, (root) => openRegularFile(root, id));
  return { stream: fh.createReadStream(), size: st.size, mtime: st.mtime.toISOString() };
}

/** `Connector.stat`: the regular file's metadata, or null when there is none at the identity. */
export async function statObject(rootText: string, rootBytes: Buffer, identity: string): Promise<ObjectInfo | null> {
  const id = objectIdentity(identity);
  return withRoot(rootText, rootBytes, (root) =>
    withEntry(root, id, async (entry) => {
      if (entry === null || !entry.stats.isFile()) return null;
      return { identity: id, size: entry.stats.size, mtime: entry.stats.mtime.toISOString() };
    }),
  );
}
