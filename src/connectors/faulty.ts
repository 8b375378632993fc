/**
 * Fault injection around any connector, for fault tests and load tests of recovery: a fraction of page
 * listings and reads fail with a transient (retryable) ConnectorError. Enabled per integration with
 * settings `{"faults": {"list_fail_rate": 0.1, "read_fail_rate": 0.1, "fail_first_lists": 1}}`.
 */
import { ConnectorError, type ActionResult, type Connector, type ObjectInfo, type ObjectVersion, type OpenedObject, type Page, type ProbeResult, type QuarantineOptions } from './types.ts';

export interface FaultOptions {
  /** Fraction (0..1) of listPage calls that fail. */
  listFailRate?: number;
  /** Fraction (0..1) of open calls that fail. */
  readFailRate?: number;
  /** The first n listPage calls (per process) fail, whatever the rate. */
  failFirstLists?: number;
  random?: () => number;
}

export class FaultyConnector implements Connector {
  readonly kind: string;
  readonly #inner: Connector;
  readonly #opts: Required<Omit<FaultOptions, 'random'>> & { random: () => number };
  #lists = 0;

  /** The inner connector's, when it has one (see Connector.identityOfEvent). */
  readonly identityOfEvent?: (name: string) => string | null;

  constructor(inner: Connector, opts: FaultOptions) {
    this.#inner = inner;
    if (inner.identityOfEvent) this.identityOfEvent = (name) => inner.identityOfEvent!(name);
    this.kind = inner.kind;
    this.#opts = {
      listFailRate: opts.listFailRate ?? 0,
      readFailRate: opts.readFailRate ?? 0,
      failFirstLists: opts.failFirstLists ?? 0,
      random: opts.random ?? Math.random,
    };
  }

  async listPage(scopeRoot: string, cursor: string | null, pageSize: number): Promise<Page> {
    this.#lists++;
    if (this.#lists <= this.#opts.failFirstLists || this.#opts.random() < this.#opts.listFailRate) {
      throw new ConnectorError('transient', `injected fault: listing after cursor ${JSON.stringify(cursor)} failed`);
    }
    return this.#inner.listPage(scopeRoot, cursor, pageSize);
  }

  async open(identity: string, version?: ObjectVersion): Promise<OpenedObject> {
    if (this.#opts.random() < this.#opts.readFailRate) {
      throw new ConnectorError('transient', `injected fault: reading ${identity} failed`);
    }
    return this.#inner.open(identity, version);
  }

  stat(identity: string): Promise<ObjectInfo | null> {
    return this.#inner.stat(identity);
  }
  remove(identity: string, version?: ObjectVersion): Promise<ActionResult> {
    return this.#inner.remove(identity, version);
  }
  quarantine(identity: string, opts?: QuarantineOptions): Promise<ActionResult> {
    return this.#inner.quarantine(identity, opts);
  }
  tag(identity: string, tags: Record<string, string>, version?: ObjectVersion): Promise<ActionResult> {
    return this.#inner.tag(identity, tags, version);
  }
  isInternal(identity: string): boolean {
    return this.#inner.isInternal?.(identity) ?? false;
  }
  async probe(scopeRoot: string): Promise<ProbeResult[]> {
    return this.#inner.probe ? this.#inner.probe(scopeRoot) : [];
  }
  async close(): Promise<void> {
    await this.#inner.close?.();
  }
}
