/**
 * Storage events from an SQS queue: S3 event notifications sent to SQS directly, through SNS (the S3
 * event as a JSON string in `Message`), or through SNS with raw message delivery (the bare S3 event).
 *
 * Long-polls `ReceiveMessage` (up to 10 messages, `WaitTimeSeconds` 20 by default) and hands each body
 * as it is to an injected `handle(body, messageId)`, which commits the events with their ingest job
 * (and records a body it cannot parse, then resolves). A message is deleted (`DeleteMessageBatch`)
 * only after its `handle` resolved: at least once, never lost. When `handle` throws, the message stays
 * and SQS redelivers it after its visibility timeout (a redrive policy moves it to a dead-letter queue
 * after `maxReceiveCount` tries; that is the queue's configuration). The messages of one receive are
 * handled concurrently; S3 events carry no order across messages anyway (`sequencer` orders them).
 *
 * `stop()` aborts the long poll at once, lets the batch being handled finish (handle and delete), and
 * resolves when the loop has ended. Receive errors back off exponentially (1 s doubling to 30 s, with
 * jitter) and the loop goes on.
 */
import { DeleteMessageBatchCommand, ReceiveMessageCommand, SQSClient, type Message } from '@aws-sdk/client-sqs';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseS3Credentials } from '../connectors/s3/settings.ts';
import type { Logger } from '../log.ts';

/** SQS's most messages per receive. */
const MAX_MESSAGES = 10;
/** SQS's longest long poll (seconds). */
const MAX_WAIT_SECONDS = 20;

/** How an SQS event source is built. */
export interface SqsEventSourceOptions {
  /** The queue's URL, e.g. https://sqs.eu-west-1.amazonaws.com/123456789012/dsx-events. */
  queueUrl: string;
  /** Signing region; default: the region in an AWS queue URL, else us-east-1. */
  region?: string;
  /** Endpoint of an SQS-compatible service; default: the queue URL's own host. */
  endpoint?: string;
  /** `{accessKeyId, secretAccessKey, sessionToken?}`, or none for the SDK's default chain. */
  credentials?: unknown;
  /** Commits the events of one message body; throws to keep the message for redelivery. */
  handle(body: string, messageId: string): Promise<void>;
  /** Long-poll wait, 0-20 s (default 20). */
  waitTimeSeconds?: number;
  /** Messages per receive, 1-10 (default 10). */
  maxMessages?: number;
  /** Visibility timeout given to received messages (seconds); default: the queue's own. */
  visibilityTimeoutSeconds?: number;
  /** Backoff after a failed receive: first pause and cap (ms; defaults 1,000 and 30,000). */
  receiveBackoff?: { baseMs?: number; maxMs?: number };
  /** Test hooks. */
  hooks?: SqsSourceHooks;
  log?: Logger;
}

/** Hooks between the steps of one batch (crash tests) and on receive errors. */
export interface SqsSourceHooks {
  /** After `handle` resolved for these messages and before they are deleted; a throw skips the delete. */
  beforeDelete?(messageIds: string[]): Promise<void> | void;
  /** A receive failed; the loop pauses `delayMs` before the next. */
  onReceiveError?(err: unknown, delayMs: number): void;
  /** A batch was handled and its deletes answered (or failed). */
  afterBatch?(result: { handled: string[]; failed: string[]; deleted: string[] }): void;
}

/** Counters since start. */
export interface SqsSourceStats {
  received: number;
  handled: number;
  failed: number;
  deleted: number;
  receiveErrors: number;
}

/** The signing region of an AWS queue URL (`sqs.<region>.amazonaws.com` or `<region>.queue.amazonaws.com`). */
export function regionOfQueueUrl(queueUrl: string): string | undefined {
  let host: string;
  try {
    host = new URL(queueUrl).hostname;
  } catch {
    return undefined;
  }
  return /^sqs\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$/.exec(host)?.[1] ?? /^([a-z0-9-]+)\.queue\.amazonaws\.com(\.cn)?$/.exec(host)?.[1];
}

/** Long-polls one SQS queue and hands each message to `handle` (see the module comment). */
export class SqsEventSource {
  readonly queueUrl: string;
  readonly stats: SqsSourceStats = { received: 0, handled: 0, failed: 0, deleted: 0, receiveErrors: 0 };
  readonly #client: SQSClient;
  readonly #opts: SqsEventSourceOptions;
  readonly #log: Logger | undefined;
  #running = false;
  #stopped = false;
  #loop: Promise<void> | null = null;
  #stopping: AbortController | null = null;

  constructor(opts: SqsEventSourceOptions) {
    let url: URL;
    try {
      url = new URL(opts.queueUrl);
    } catch {
      throw new Error(`SQS queue URL ${JSON.stringify(opts.queueUrl)} is not a URL: set event_queue_url to the queue's URL (https://sqs.<region>.amazonaws.com/<account>/<name>)`);
    }
    const wait = opts.waitTimeSeconds ?? MAX_WAIT_SECONDS;
    if (!Number.isInteger(wait) || wait < 0 || wait > MAX_WAIT_SECONDS) throw new Error(`waitTimeSeconds must be an integer from 0 to ${MAX_WAIT_SECONDS}, got ${wait}`);
    const max = opts.maxMessages ?? MAX_MESSAGES;
    if (!Number.isInteger(max) || max < 1 || max > MAX_MESSAGES) throw new Error(`maxMessages must be an integer from 1 to ${MAX_MESSAGES}, got ${max}`);
    const credentials = parseS3Credentials(opts.credentials);
    this.queueUrl = url.toString();
    this.#opts = opts;
    this.#log = opts.log?.child({ source: 'sqs', queue: url.pathname });
    // The SDK's own retries (3 tries) stay on here: no request limiter applies to the queue, and a
    // delete that fails after handle succeeded only means one redelivery.
    this.#client = new SQSClient({
      region: opts.region ?? regionOfQueueUrl(opts.queueUrl) ?? 'us-east-1',
      ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
      ...(credentials ? { credentials } : {}),
    });
  }

  /** True between `start()` and the end of `stop()`. */
  get running(): boolean {
    return this.#running;
  }

  /** Starts polling (a no-op when already running). A stopped source is not started again: build a new one. */
  start(): void {
    if (this.#running) return;
    if (this.#stopped) throw new Error('this SQS event source was stopped: build a new one');
    this.#running = true;
    this.#stopping = new AbortController();
    this.#loop = this.#run(this.#stopping.signal);
  }

  /** Aborts the long poll, waits for the batch being handled, and releases the client. */
  async stop(): Promise<void> {
    this.#running = false;
    this.#stopped = true;
    this.#stopping?.abort();
    await this.#loop;
    this.#loop = null;
    this.#client.destroy();
  }

  async #run(stopped: AbortSignal): Promise<void> {
    let failures = 0;
    while (!stopped.aborted) {
      let messages: Message[];
      try {
        const out = await this.#client.send(
          new ReceiveMessageCommand({
            QueueUrl: this.queueUrl,
            MaxNumberOfMessages: this.#opts.maxMessages ?? MAX_MESSAGES,
            WaitTimeSeconds: this.#opts.waitTimeSeconds ?? MAX_WAIT_SECONDS,
            ...(this.#opts.visibilityTimeoutSeconds !== undefined ? { VisibilityTimeout: this.#opts.visibilityTimeoutSeconds } : {}),
          }),
          { abortSignal: stopped },
        );
        messages = out.Messages ?? [];
        failures = 0;
      } catch (err) {
        if (stopped.aborted) break;
        failures++;
        this.stats.receiveErrors++;
        const base = this.#opts.receiveBackoff?.baseMs ?? 1000;
        const cap = this.#opts.receiveBackoff?.maxMs ?? 30_000;
        const backoff = Math.min(cap, base * 2 ** Math.min(failures - 1, 20));
        const delay = Math.round(backoff / 2 + Math.random() * (backoff / 2));
        this.#log?.warn({ err: (err as Error).message, delay_ms: delay, failures }, 'SQS receive failed: backing off');
        this.#opts.hooks?.onReceiveError?.(err, delay);
        await sleep(delay, undefined, { signal: stopped }).catch(() => {});
        continue;
      }
      if (messages.length > 0) await this.#process(messages);
    }
  }

  /** Handles one received batch, then deletes the messages whose `handle` resolved. */
  async #process(messages: Message[]): Promise<void> {
    this.stats.received += messages.length;
    const results = await Promise.allSettled(messages.map(async (m) => this.#opts.handle(m.Body ?? '', m.MessageId ?? '')));
    const done: Message[] = [];
    const failed: string[] = [];
    results.forEach((r, i) => {
      const m = messages[i]!;
      if (r.status === 'fulfilled') {
        done.push(m);
        return;
      }
      failed.push(m.MessageId ?? '');
      this.#log?.warn({ message_id: m.MessageId, err: (r.reason as Error)?.message ?? String(r.reason) }, 'SQS message not handled: kept for redelivery');
    });
    this.stats.handled += done.length;
    this.stats.failed += failed.length;
    const handled = done.map((m) => m.MessageId ?? '');
    const deleted: string[] = [];
    try {
      if (done.length > 0) {
        await this.#opts.hooks?.beforeDelete?.(handled);
        const out = await this.#client.send(
          new DeleteMessageBatchCommand({ QueueUrl: this.queueUrl, Entries: done.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle! })) }),
        );
        for (const s of out.Successful ?? []) deleted.push(done[Number(s.Id)]!.MessageId ?? '');
        for (const f of out.Failed ?? []) {
          this.#log?.warn({ message_id: done[Number(f.Id)]?.MessageId, code: f.Code, err: f.Message }, 'SQS delete failed: the message will be redelivered and handled again');
        }
      }
    } catch (err) {
      this.#log?.warn({ err: (err as Error).message, messages: handled.length }, 'SQS delete failed: the messages will be redelivered and handled again');
    }
    this.stats.deleted += deleted.length;
    this.#opts.hooks?.afterBatch?.({ handled, failed, deleted });
  }
}
