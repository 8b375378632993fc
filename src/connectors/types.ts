/**
 * Connector contract: a thin, stateless adapter between the core and one storage platform.
 *
 * Glossary
 * - identity: the stable name of an object relative to its integration (filesystem: a POSIX-style path
 *   relative to the root, `/` separated, no leading slash, never `.` or `..` segments; S3: the key,
 *   verbatim; Azure Blob: the blob name, verbatim).
 * - scope root: a directory/prefix inside the integration, also relative (`""` = the whole integration).
 * - cursor: an opaque string returned by `listPage`; passing it back resumes right after the last object
 *   of the previous page. `null` starts at the beginning.
 * - version: which version of an object an action is about. Where the store keeps versions (S3 with
 *   versioning), `versionId` names one exactly; `etag` names the content. An action given a version acts
 *   on that version only, so a newer upload is never deleted or quarantined by mistake.
 */
import type { Readable } from 'node:stream';

/** One object as enumeration or `stat` sees it. */
export interface ObjectInfo {
  identity: string;
  size: number | null;
  etag?: string | null;
  /** ISO-8601 modification time, where the platform has one. */
  mtime?: string | null;
  /** The store's version id, where it keeps versions (S3 `VersionId`). */
  versionId?: string | null;
}

/** Which version of an object an action is about (see the glossary). Both optional. */
export interface ObjectVersion {
  etag?: string | null;
  versionId?: string | null;
}

/** How a quarantine move is asked for: the version to move, and the decision it carries out. */
export interface QuarantineOptions extends ObjectVersion {
  /**
   * A stable id of this decision (derived from the side-effect ledger row): a retry after a crash
   * between the move and the ledger commit finds its own earlier copy instead of making a second one.
   */
  key?: string;
}

/**
 * An entry enumeration met and did not return as an object, with why: nothing is skipped silently.
 * - `symlink`, `special_file` (FIFO, socket, device): not regular files, never followed or read.
 * - `unreadable_directory`: a directory that could not be listed (its contents are unknown).
 * - `directory_marker`: an object-store key ending in `/` that only marks a folder.
 * - `internal`: the connector's own objects (quarantine, probes) inside the listed area.
 */
export interface SkippedEntry {
  identity: string;
  reason: 'symlink' | 'special_file' | 'unreadable_directory' | 'directory_marker' | 'internal';
  detail?: string;
}

/** One page of an enumeration, in a stable order. `nextCursor` is null when the scope is exhausted. */
export interface Page {
  objects: ObjectInfo[];
  nextCursor: string | null;
  /** Entries met on this page and not returned as objects (each page reports only its own). */
  skipped?: SkippedEntry[];
}

/**
 * Why a connector could not do what was asked.
 * - `throttled`: the store asked us to slow down (S3 SlowDown/503, Azure ServerBusy/503, 429); retry later
 *   without counting it against the object.
 * - `configuration`: bad credentials, a missing bucket/container, an unreachable endpoint: nothing will
 *   work until an operator fixes the integration (a full scan fails at once with the message).
 */
export type ConnectorErrorKind =
  | 'not_found'
  | 'permission'
  | 'escape'
  | 'transient'
  | 'throttled'
  | 'invalid'
  | 'unavailable'
  | 'configuration';

/** An error with a classification the pipeline can act on (retry or finalize). */
export class ConnectorError extends Error {
  readonly kind: ConnectorErrorKind;
  /** True when retrying the same call later may succeed. */
  readonly retryable: boolean;
  constructor(kind: ConnectorErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConnectorError';
    this.kind = kind;
    this.retryable = kind === 'transient' || kind === 'throttled';
  }
}

/**
 * Result of an item action. `already_done` makes actions idempotent under redelivery; `skipped` means
 * the action was deliberately not done (the object changed since it was scanned: a newer version is
 * never deleted or moved by mistake), with the reason in `detail`. Failures are thrown, never returned.
 */
export interface ActionResult {
  status: 'done' | 'already_done' | 'not_supported' | 'skipped';
  detail?: string;
}

/** An open object: a byte stream and what is known of the version being read. */
export interface OpenedObject {
  stream: Readable;
  size: number | null;
  etag?: string | null;
  versionId?: string | null;
  mtime?: string | null;
}

/** One line of `dsx-connect integration test`: a capability the integration's scopes need. */
export interface ProbeResult {
  capability: 'list' | 'read' | 'tag' | 'quarantine' | 'delete';
  ok: boolean;
  detail: string;
}

export interface Connector {
  readonly kind: string;
  /** One page of objects under `scopeRoot`, after `cursor`, at most `pageSize` objects. */
  listPage(scopeRoot: string, cursor: string | null, pageSize: number): Promise<Page>;
  /**
   * Opens the object for reading (the given version where the store keeps versions, else the current
   * one). Throws ConnectorError('not_found' | 'permission' | 'escape' | ...).
   */
  open(identity: string, version?: ObjectVersion): Promise<OpenedObject>;
  /** Current metadata, or null when the object does not exist. */
  stat(identity: string): Promise<ObjectInfo | null>;
  /** Deletes the object (that version, when given); `already_done` when it is already gone. */
  remove(identity: string, version?: ObjectVersion): Promise<ActionResult>;
  /**
   * Moves the object into the integration's quarantine area: copy, verify the copy, then delete the
   * source. Never overwrites an earlier quarantined object: a name already taken gets a unique suffix,
   * and the detail says where the object went. `already_done` when this decision's copy is already there.
   */
  quarantine(identity: string, opts?: QuarantineOptions): Promise<ActionResult>;
  /** Merges `tags` into the object's own tags (never replacing others); `not_supported` without tags. */
  tag(identity: string, tags: Record<string, string>, version?: ObjectVersion): Promise<ActionResult>;
  /**
   * True for identities the connector keeps for itself (its quarantine prefix in the same bucket, its
   * probe objects): never enumerated, and storage events about them are ignored.
   */
  isInternal?(identity: string): boolean;
  /**
   * The identity of the object a storage event names (an S3 key or a blob name, decoded): null when the
   * object is not the integration's to scan (outside its prefix, a folder marker, the connector's own
   * quarantine or probe objects). Connectors without it take event names through the core's path rules.
   */
  identityOfEvent?(name: string): string | null;
  /** Tries each capability under `scopeRoot` without changing any object but its own probe. */
  probe?(scopeRoot: string): Promise<ProbeResult[]>;
  /** Releases sockets and timers (called when the registry replaces or drops the connector). */
  close?(): Promise<void>;
}
