/**
 * Connector contract: a thin, stateless adapter between the core and one storage platform.
 *
 * Glossary
 * - identity: the stable name of an object relative to its integration root (POSIX-style path, `/`
 *   separated, no leading slash, never `.` or `..` segments).
 * - scope root: a directory/prefix inside the integration, also relative (`""` = the whole integration).
 * - cursor: an opaque string returned by `listPage`; passing it back resumes right after the last object
 *   of the previous page. `null` starts at the beginning.
 */
import type { Readable } from 'node:stream';

/** One object as enumeration or `stat` sees it. */
export interface ObjectInfo {
  identity: string;
  size: number | null;
  etag?: string | null;
  /** ISO-8601 modification time, where the platform has one. */
  mtime?: string | null;
}

/** One page of an enumeration, in a stable order. `nextCursor` is null when the scope is exhausted. */
export interface Page {
  objects: ObjectInfo[];
  nextCursor: string | null;
}

/** Why a connector could not do what was asked. */
export type ConnectorErrorKind = 'not_found' | 'permission' | 'escape' | 'transient' | 'invalid' | 'unavailable';

/** An error with a classification the pipeline can act on (retry or finalize). */
export class ConnectorError extends Error {
  readonly kind: ConnectorErrorKind;
  /** True when retrying the same call later may succeed. */
  readonly retryable: boolean;
  constructor(kind: ConnectorErrorKind, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConnectorError';
    this.kind = kind;
    this.retryable = kind === 'transient';
  }
}

/** Result of an item action. `already_done` makes actions idempotent under redelivery. */
export interface ActionResult {
  status: 'done' | 'already_done' | 'not_supported';
  detail?: string;
}

/** An open object: a byte stream and, where known, its size. */
export interface OpenedObject {
  stream: Readable;
  size: number | null;
}

export interface Connector {
  readonly kind: string;
  /** One page of objects under `scopeRoot`, after `cursor`, at most `pageSize` objects. */
  listPage(scopeRoot: string, cursor: string | null, pageSize: number): Promise<Page>;
  /** Opens the object for reading. Throws ConnectorError('not_found' | 'permission' | 'escape' | ...). */
  open(identity: string): Promise<OpenedObject>;
  /** Current metadata, or null when the object does not exist. */
  stat(identity: string): Promise<ObjectInfo | null>;
  /** Deletes the object; `already_done` when it is already gone. */
  remove(identity: string): Promise<ActionResult>;
  /** Moves the object into the integration's quarantine area; `already_done` when it is already there. */
  quarantine(identity: string): Promise<ActionResult>;
  /** Tags the object; `not_supported` where the platform has no tags. */
  tag(identity: string, tags: Record<string, string>): Promise<ActionResult>;
}
