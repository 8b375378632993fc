/**
 * Storage events from an Azure Storage Queue that an Event Grid subscription delivers to (Event Grid's
 * `StorageQueue` endpoint type: one event per message, the event object itself, not an array).
 *
 * At least once, commit first: each message's body goes to `handle(body, messageId)` (the caller
 * parses it with `parseEventBody` and commits the events with their ingest job) and the message is
 * deleted only after `handle` resolved. When `handle` throws, or the process dies before the delete,
 * the message becomes visible again after the visibility timeout and is delivered again; the intake
 * dedupes by Event Grid's event id.
 *
 * Body encoding: Event Grid has written queue messages both as plain JSON (so reported in 2021:
 * MicrosoftDocs/azure-docs#69702, Azure/azure-webjobs-sdk#2667) and base64-encoded JSON (reported
 * since: MicrosoftDocs/azure-docs#102923 in 2022, and the captures in dapr/components-contrib#232 and
 * Azure/azure-sdk-for-js#6805). Both are accepted: a body that is not JSON but base64 of JSON is decoded.
 *
 * Polling is cheap while idle: an empty receive doubles the pause (from `idleMinMs` to `idleMaxMs`,
 * default 250 ms to 10 s: at most ~8,640 receives a day on an idle queue); a batch resets it. Failures
 * (an unreachable account, a missing queue) back off the same way up to `errorMaxMs` and are kept in
 * `stats.lastError`. A message delivered more than `maxDequeueCount` times is moved to the queue
 * `<name>-poison` (the Azure Functions convention) so a body that can never be handled stops looping;
 * nothing is lost.
 */
import { DefaultAzureCredential } from '@azure/identity';
import { AnonymousCredential, QueueClient, StorageSharedKeyCredential, type StoragePipelineOptions } from '@azure/storage-queue';
import { parseAzureCredentials, type AzureCredentials } from '../connectors/azure-blob/credentials.ts';
import { toConnectorError } from '../connectors/azure-blob/errors.ts';
import type { RequestLimiter } from '../connectors/rate-limit.ts';
import { ConnectorError } from '../connectors/types.ts';
import type { Logger } from '../log.ts';

/** The poll loop retries on its own: the SDK's retry (4 tries up to 120 s) would only stall a poll. */
const PIPELINE_OPTIONS: StoragePipelineOptions = { retryOptions: { maxTries: 1 }, userAgentOptions: { userAgentPrefix: 'dsx-connect' } };

export interface AzureQueueSourceOptions {
  /** The queue's URL, e.g. `https://acct.queue.core.windows.net/dsx-events` (settings.event_queue_url). */
  queueUrl: string;
  /** The integration's credentials (the forms of the Azure Blob connector; a SAS must cover the queue service). */
  credentials: unknown;
  /** Commits the events of one message; the message is deleted only once this resolved. */
  handle(body: string, messageId: string): Promise<void>;
  /** Messages per receive, 1-32 (default 32). */
  batchSize?: number;
  /** Seconds a received message stays invisible to others while it is handled (default 300). */
  visibilityTimeoutSec?: number;
  /** Pause after an empty receive, doubling from `idleMinMs` to `idleMaxMs` (defaults 250 ms, 10 s). */
  idleMinMs?: number;
  idleMaxMs?: number;
  /** Longest pause after failed receives (default 30 s). */
  errorMaxMs?: number;
  /** Deliveries after which a message goes to `<queue>-poison` (default 10). */
  maxDequeueCount?: number;
  /** Called between a resolved `handle` and the delete (a hook for crash tests: throwing skips the delete). */
  afterHandle?(messageId: string): Promise<void> | void;
  /** Called with the one-line message of each failed receive, delete or poison move. */
  onError?(message: string): void;
  /** Called once a message is deleted (handled, or moved to the poison queue). */
  onDeleted?(messageId: string): void;
  /** The integration's limiter (the queue shares the storage account's request limits). */
  limiter?: RequestLimiter;
  log?: Logger;
}

/** Counters of the source since `start()`. */
export interface QueueSourceStats {
  receives: number;
  emptyReceives: number;
  handled: number;
  deleted: number;
  /** `handle` threw: the message stays and comes back. */
  failed: number;
  poisoned: number;
  /** One line: the last failed receive or delete, with what to do. */
  lastError: string | null;
}

/** Decodes a queue message body: JSON as is, base64 of JSON decoded, anything else as it came. */
export function decodeQueueMessage(text: string): string {
  const trimmed = text.trim();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) return text;
  if (trimmed.length % 4 === 0 && /^[A-Za-z0-9+/]+={0,2}$/.test(trimmed)) {
    const decoded = Buffer.from(trimmed, 'base64').toString('utf8');
    const d = decoded.trim();
    if (d.startsWith('{') || d.startsWith('[')) return decoded;
  }
  return text;
}

function queueNameOf(url: URL): string {
  const name = url.pathname.split('/').filter(Boolean).pop();
  if (!name || !/^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$/.test(name)) {
    throw new ConnectorError('configuration', `event_queue_url ${url.origin}${url.pathname}: must end in a queue name (3-63 lowercase letters, digits and single hyphens)`);
  }
  return name;
}

/** The URL of a queue's poison queue: `<name>-poison` beside it (the name cut to fit 63 characters). */
export function poisonQueueUrl(queueUrl: string): string {
  const u = new URL(queueUrl);
  const name = queueNameOf(u);
  u.pathname = u.pathname.replace(/[^/]+\/*$/, `${name.slice(0, 56).replace(/-+$/, '')}-poison`);
  return u.toString();
}

/** Builds the QueueClient of `queueUrl` with the integration's credentials. */
export function createQueueClient(queueUrl: string, credentials: unknown): QueueClient {
  let url: URL;
  try {
    url = new URL(queueUrl);
  } catch {
    throw new ConnectorError('configuration', 'event_queue_url: not a URL (expected https://<account>.queue.core.windows.net/<queue>)');
  }
  if (url.search) throw new ConnectorError('configuration', 'event_queue_url: must not carry a query string (a SAS token goes into the credentials)');
  const name = queueNameOf(url);
  const bare = `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
  const c = parseAzureCredentials(credentials);
  let client: QueueClient;
  try {
    client = queueClientFor(c, bare, name);
  } catch (err) {
    if (err instanceof ConnectorError) throw err;
    // The SDK cannot find account and queue in the URL (the emulator's form is http://host:port/<account>/<queue>).
    throw new ConnectorError('configuration', `event_queue_url ${bare}: must end in a queue name (https://<account>.queue.core.windows.net/<queue>)`, { cause: err });
  }
  return client;
}

function queueClientFor(c: AzureCredentials, bare: string, name: string): QueueClient {
  switch (c.kind) {
    case 'connectionString': {
      const client = new QueueClient(c.connectionString, name, PIPELINE_OPTIONS);
      const actual = client.url.split('?')[0]!.replace(/\/+$/, '');
      if (actual !== bare) {
        throw new ConnectorError('configuration', `event_queue_url ${bare} differs from the connection string's queue endpoint (${actual}): fix one of them`);
      }
      return client;
    }
    case 'sharedKey':
      return new QueueClient(bare, new StorageSharedKeyCredential(c.accountName, c.accountKey), PIPELINE_OPTIONS);
    case 'sas':
      return new QueueClient(`${bare}?${c.sasToken}`, new AnonymousCredential(), PIPELINE_OPTIONS);
    case 'identity':
      // The SDK refuses to send a bearer token over plain HTTP.
      if (!bare.startsWith('https://')) throw new ConnectorError('configuration', 'event_queue_url: must be https:// when signing in with DefaultAzureCredential (no credentials given)');
      return new QueueClient(bare, new DefaultAzureCredential(), PIPELINE_OPTIONS);
  }
}

/** Polls one queue and hands its messages to `handle` (see the module comment). */
export class AzureQueueEventSource {
  readonly stats: QueueSourceStats = { receives: 0, emptyReceives: 0, handled: 0, deleted: 0, failed: 0, poisoned: 0, lastError: null };
  readonly #queue: QueueClient;
  readonly #poisonQueue: QueueClient;
  readonly #opts: AzureQueueSourceOptions;
  readonly #account: string;
  #loop: Promise<void> | null = null;
  #stopping: AbortController | null = null;

  /** Throws ConnectorError('configuration') for a bad queue URL or credentials. */
  constructor(opts: AzureQueueSourceOptions) {
    const batch = opts.batchSize ?? 32;
    if (!Number.isInteger(batch) || batch < 1 || batch > 32) throw new ConnectorError('configuration', `queue batch size must be 1-32 (Azure's limit per receive), got ${batch}`);
    this.#opts = opts;
    this.#queue = createQueueClient(opts.queueUrl, opts.credentials);
    this.#poisonQueue = createQueueClient(poisonQueueUrl(opts.queueUrl), opts.credentials);
    this.#account = this.#queue.url.split('?')[0]!;
  }

  /** True between `start()` and the end of `stop()`. */
  get running(): boolean {
    return this.#loop !== null;
  }

  /** Starts polling (a second call while running does nothing). */
  start(): void {
    if (this.#loop) return;
    this.#stopping = new AbortController();
    this.#loop = this.#run(this.#stopping.signal);
  }

  /** Stops polling; resolves once the batch in flight is handled (and its messages deleted). */
  async stop(): Promise<void> {
    if (!this.#loop) return;
    this.#stopping!.abort();
    await this.#loop;
    this.#loop = null;
  }

  async #run(stop: AbortSignal): Promise<void> {
    const idleMin = this.#opts.idleMinMs ?? 250;
    const idleMax = this.#opts.idleMaxMs ?? 10_000;
    const errorMax = this.#opts.errorMaxMs ?? 30_000;
    let pause = idleMin;
    while (!stop.aborted) {
      let failed = false;
      let got = 0;
      try {
        got = await this.#pollOnce();
      } catch (err) {
        failed = true;
        this.#fail(toConnectorError(err, { what: 'receiving queue messages', account: this.#account, need: 'process (read and delete) queue messages' }).message);
      }
      if (got > 0) {
        pause = idleMin;
        continue;
      }
      await abortableSleep(pause, stop);
      pause = Math.min(pause * 2, failed ? errorMax : idleMax);
    }
  }

  #request<T>(fn: () => Promise<T>): Promise<T> {
    return this.#opts.limiter ? this.#opts.limiter.run(fn) : fn();
  }

  /** One receive and its batch; returns how many messages came. */
  async #pollOnce(): Promise<number> {
    this.stats.receives++;
    const res = await this.#request(() =>
      this.#queue.receiveMessages({ numberOfMessages: this.#opts.batchSize ?? 32, visibilityTimeout: this.#opts.visibilityTimeoutSec ?? 300 }),
    );
    const items = res.receivedMessageItems;
    if (items.length === 0) this.stats.emptyReceives++;
    await Promise.all(items.map((m) => this.#one(m.messageId, m.popReceipt, m.messageText, m.dequeueCount)));
    return items.length;
  }

  async #one(messageId: string, popReceipt: string, text: string, dequeueCount: number): Promise<void> {
    const max = this.#opts.maxDequeueCount ?? 10;
    if (dequeueCount > max) {
      await this.#poison(messageId, popReceipt, text, dequeueCount);
      return;
    }
    try {
      await this.#opts.handle(decodeQueueMessage(text), messageId);
      this.stats.handled++;
      await this.#opts.afterHandle?.(messageId);
    } catch (err) {
      this.stats.failed++;
      this.#opts.log?.warn({ messageId, dequeueCount, err: err instanceof Error ? err.message : String(err) }, 'queue message not handled; it will be delivered again');
      return;
    }
    await this.#delete(messageId, popReceipt);
  }

  async #delete(messageId: string, popReceipt: string): Promise<void> {
    try {
      await this.#request(() => this.#queue.deleteMessage(messageId, popReceipt));
      this.stats.deleted++;
      this.#opts.onDeleted?.(messageId);
    } catch (err) {
      // 404: the visibility timeout ran out during `handle` and another receiver holds the message now:
      // it will be handled (and deduped) again. Anything else is kept for `stats.lastError`.
      const mapped = toConnectorError(err, { what: `deleting queue message ${messageId}`, account: this.#account, need: 'process (delete) queue messages' });
      if (mapped.kind === 'not_found') this.#opts.log?.warn({ messageId }, 'queue message was handled after its visibility timeout; it will be delivered again');
      else this.#fail(mapped.message);
    }
  }

  async #poison(messageId: string, popReceipt: string, text: string, dequeueCount: number): Promise<void> {
    const poison = this.#poisonQueue;
    try {
      await this.#request(() => poison.createIfNotExists());
      await this.#request(() => poison.sendMessage(text));
    } catch (err) {
      this.#fail(toConnectorError(err, { what: `moving message ${messageId} to the poison queue ${poison.name}`, account: this.#account, need: 'create queues and add messages' }).message);
      return;
    }
    this.stats.poisoned++;
    this.#opts.log?.error({ messageId, dequeueCount, poisonQueue: poison.name }, 'queue message could not be handled; moved to the poison queue');
    await this.#delete(messageId, popReceipt);
  }

  #fail(message: string): void {
    this.stats.lastError = message;
    this.#opts.log?.warn({ queue: this.#account }, message);
    this.#opts.onError?.(message);
  }
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
