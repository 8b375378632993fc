/**
 * The filesystem connector: one integration is a directory on a local or mounted filesystem.
 *
 * No identity can reach outside the root: `..`, absolute paths and symlinks that lead out are refused
 * with `ConnectorError('escape')`, and every read, stat, delete, move and directory listing goes through
 * directory descriptors held component by component (descriptors.ts, resolve.ts), so renaming a
 * directory and putting a symlink in its place between two system calls redirects nothing. Names are
 * bytes: one that is not valid UTF-8 gets an identity that maps back to exactly its bytes (see
 * `nameFromBytes` in identity.ts), so it is scanned like any other file instead of being skipped.
 *
 * The split: walk.ts (enumeration), read.ts (open, stat), remove.ts and quarantine.ts (remediation),
 * quarantine-area.ts (the quarantine directory), resolve.ts and descriptors.ts (path safety),
 * errors.ts (errno mapping), paths.ts (path arithmetic).
 */
import path from 'node:path';
import { probeFilesystem } from './probe.ts';
import { bytesFromName } from '../identity.ts';
import { ConnectorError, type ActionResult, type Connector, type ObjectInfo, type OpenedObject, type Page, type ProbeResult, type QuarantineOptions } from '../types.ts';
import { relativeInside, textPath } from './paths.ts';
import { QuarantineArea, type OtherRoot } from './quarantine-area.ts';
import { quarantineObject } from './quarantine.ts';
import { openObject, statObject } from './read.ts';
import { removeObject } from './remove.ts';
import { listPage } from './walk.ts';

/** Settings of a filesystem integration. */
export interface FilesystemConnectorOptions {
  /** Absolute directory of the integration. */
  root: string;
  /**
   * Absolute directory where quarantined files go: outside the root, owned by the service user, not
   * writable by group or others (created with mode 0700 when missing). The registry passes
   * `<DSX_DATA_DIR>/quarantine/<integration id>` unless the integration sets `quarantine_dir`.
   * Without one, `quarantine` fails with a configuration error.
   */
  quarantineDir?: string;
  /**
   * The roots of the other filesystem integrations (the registry passes them): the quarantine
   * directory must not be inside or contain any of them, or that share's users could tamper with it.
   */
  otherRoots?: readonly OtherRoot[];
}

/** Connector for a directory tree. Identities are paths relative to `root`. */
export class FilesystemConnector implements Connector {
  readonly kind = 'filesystem';
  readonly #root: string;
  readonly #rootBytes: Buffer;
  readonly #quarantine: QuarantineArea | null;

  constructor(opts: FilesystemConnectorOptions) {
    if (typeof opts.root !== 'string' || !path.isAbsolute(opts.root)) {
      throw new ConnectorError('invalid', `filesystem root must be an absolute path, got ${JSON.stringify(opts.root)}`);
    }
    this.#root = textPath(path.resolve(opts.root));
    this.#rootBytes = bytesFromName(this.#root);
    const q = opts.quarantineDir;
    if (q === undefined) {
      this.#quarantine = null;
      return;
    }
    if (typeof q !== 'string' || !path.isAbsolute(q)) {
      throw new ConnectorError('invalid', `quarantine directory must be an absolute path, got ${JSON.stringify(q)}`);
    }
    this.#quarantine = new QuarantineArea(q, opts.otherRoots ?? []);
    if (relativeInside(this.#quarantine.path, this.#root) !== null) {
      throw new ConnectorError('invalid', `quarantine directory ${this.#quarantine.path} must not contain the root ${this.#root}`);
    }
  }

  /** Absolute directory of the integration. */
  get root(): string {
    return this.#root;
  }

  /** Absolute directory of the quarantine area, null when none is configured. */
  get quarantineDir(): string | null {
    return this.#quarantine?.path ?? null;
  }

  listPage(scopeRoot: string, cursor: string | null, pageSize: number): Promise<Page> {
    return listPage(this.#root, this.#rootBytes, scopeRoot, cursor, pageSize);
  }

  open(identity: string): Promise<OpenedObject> {
    return openObject(this.#root, this.#rootBytes, identity);
  }

  stat(identity: string): Promise<ObjectInfo | null> {
    return statObject(this.#root, this.#rootBytes, identity);
  }

  /** Deletes the file the identity resolves to (the bytes `open` serves). */
  remove(identity: string): Promise<ActionResult> {
    return removeObject(this.#root, this.#rootBytes, identity);
  }

  /**
   * Moves the file into the quarantine directory under its identity's path, never replacing an earlier
   * copy; the detail says where it went. `opts.key` names the decision (see quarantine.ts).
   */
  quarantine(identity: string, opts?: QuarantineOptions): Promise<ActionResult> {
    return quarantineObject(this.#root, this.#rootBytes, this.#quarantine, identity, opts?.key);
  }

  async tag(_identity: string, _tags: Record<string, string>): Promise<ActionResult> {
    return { status: 'not_supported', detail: 'plain filesystems have no object tags' };
  }

  probe(scopeRoot: string): Promise<ProbeResult[]> {
    return probeFilesystem(this, this.#root, this.quarantineDir, scopeRoot);
  }
}
