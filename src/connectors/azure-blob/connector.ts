/**
 * The Azure Blob connector: one integration is a container (optionally a prefix inside it) of a storage
 * account, read and remediated through `@azure/storage-blob`. Stateless between calls: everything it
 * keeps is the SDK client and the integration's limiter, which the registry shares between all jobs of
 * the integration in a process.
 *
 * The work is split by responsibility: settings.ts and credentials.ts (validation), client.ts (SDK
 * client and its retry policy), calls.ts (limits and throttling), errors.ts (error kinds), naming.ts
 * (identities), listing.ts, reads.ts, remediation.ts (delete, quarantine), tags.ts and probe.ts.
 */
import type { ContainerClient } from '@azure/storage-blob';
import type { Logger } from '../../log.ts';
import type { RequestLimiter } from '../rate-limit.ts';
import type { ActionResult, Connector, ObjectInfo, ObjectVersion, OpenedObject, Page, ProbeResult, QuarantineOptions } from '../types.ts';
import { AzureCalls, type ThrottleRetryTuning } from './calls.ts';
import { createBlobService } from './client.ts';
import { parseAzureCredentials } from './credentials.ts';
import { listPage } from './listing.ts';
import { BlobNaming } from './naming.ts';
import { probeIntegration } from './probe.ts';
import { openBlob, statBlob } from './reads.ts';
import { quarantineBlob, removeBlob } from './remediation.ts';
import { parseAzureBlobSettings, type AzureBlobSettings } from './settings.ts';
import { tagBlob } from './tags.ts';

export interface AzureBlobConnectorOptions {
  /** The integration's settings as stored (validated here; see settings.ts). */
  settings: unknown;
  /** The integration's credentials as stored (validated here; see credentials.ts). */
  credentials: unknown;
  /** The integration's limiter, shared by all its jobs in this process. */
  limiter: RequestLimiter;
  log?: Logger;
  /** How throttling answers are retried before surfacing as `throttled`. */
  retry?: ThrottleRetryTuning;
  /** Abort a request that has not answered after this long (default 60 s). */
  requestTimeoutMs?: number;
  /** How long quarantine waits for a pending copy (default 10 min). */
  copyTimeoutMs?: number;
  /** Called before each throttling backoff (metrics, logs). */
  onThrottle?(err: unknown, delayMs: number, tryNo: number): void;
}

/** Connector for an Azure Blob container (see the module comment). */
export class AzureBlobConnector implements Connector {
  readonly kind = 'azure_blob';
  /** The validated settings. */
  readonly settings: AzureBlobSettings;
  /** The account URL (no query string), for messages. */
  readonly account: string;
  readonly #naming: BlobNaming;
  readonly #calls: AzureCalls;
  readonly #container: ContainerClient;
  readonly #quarantineContainer: ContainerClient;
  readonly #copyTimeoutMs: number | undefined;

  /** Throws ConnectorError('configuration') for invalid settings or credentials, naming the field. */
  constructor(opts: AzureBlobConnectorOptions) {
    this.settings = parseAzureBlobSettings(opts.settings);
    const credentials = parseAzureCredentials(opts.credentials);
    const { service, account } = createBlobService(this.settings, credentials);
    this.account = account;
    this.#naming = new BlobNaming(this.settings);
    this.#calls = new AzureCalls({
      limiter: opts.limiter,
      retry: opts.retry,
      requestTimeoutMs: opts.requestTimeoutMs,
      onThrottle: opts.onThrottle,
      log: opts.log,
    });
    this.#container = service.getContainerClient(this.settings.container);
    this.#quarantineContainer = service.getContainerClient(this.#naming.quarantine.container);
    this.#copyTimeoutMs = opts.copyTimeoutMs;
  }

  identityOfEvent(name: string): string | null {
    return this.#naming.identityOfBlob(name);
  }

  /** The identity of a blob of the integration's container; null outside the prefix and for internal blobs. */
  identityOfBlob(name: string): string | null {
    return this.#naming.identityOfBlob(name);
  }

  /** The blob name (in `settings.container`) of an identity. */
  blobOf(identity: string): string {
    return this.#naming.blobOf(identity);
  }

  isInternal(identity: string): boolean {
    return this.#naming.isInternal(identity);
  }

  #ctx() {
    return {
      container: this.#container,
      quarantineContainer: this.#quarantineContainer,
      naming: this.#naming,
      calls: this.#calls,
      account: this.account,
      tagMode: this.settings.tag_mode,
      copyTimeoutMs: this.#copyTimeoutMs,
    };
  }

  listPage(scopeRoot: string, cursor: string | null, pageSize: number): Promise<Page> {
    return listPage(this.#ctx(), scopeRoot, cursor, pageSize);
  }

  open(identity: string, version?: ObjectVersion): Promise<OpenedObject> {
    return openBlob(this.#ctx(), identity, version);
  }

  stat(identity: string): Promise<ObjectInfo | null> {
    return statBlob(this.#ctx(), identity);
  }

  remove(identity: string, version?: ObjectVersion): Promise<ActionResult> {
    return removeBlob(this.#ctx(), identity, version);
  }

  quarantine(identity: string, opts?: QuarantineOptions): Promise<ActionResult> {
    return quarantineBlob(this.#ctx(), identity, opts);
  }

  tag(identity: string, tags: Record<string, string>, version?: ObjectVersion): Promise<ActionResult> {
    return tagBlob(this.#ctx(), identity, tags, version);
  }

  probe(scopeRoot: string): Promise<ProbeResult[]> {
    return probeIntegration(this.#ctx(), scopeRoot);
  }

  /**
   * Stops waits in progress (copy polling) and refuses further calls. The SDK shares one HTTP client
   * per process (its idle keep-alive sockets do not hold the process open), so there is nothing else to free.
   */
  async close(): Promise<void> {
    this.#calls.close();
  }
}
