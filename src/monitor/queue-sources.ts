/**
 * Storage events from queues, the at-least-once shape people trust: for each cloud integration with
 * `event_queue_url`, the monitor role polls its queue (an SQS queue fed by S3 event notifications,
 * directly or through SNS; an Azure Storage Queue fed by Event Grid), records the events of each message
 * with their ingest job in one transaction (dsx.accept_monitor_events, as the HTTP intake does), and
 * deletes the message only after that commit. A crash before the delete redelivers the message; the
 * events' ids (S3 sequencer, Event Grid id) make the repeat a duplicate that is counted and dropped.
 *
 * Every monitor process polls (queues hand each message to one receiver at a time, so several pollers
 * share the work; no election needed). The set of queues is re-read every DSX_MONITOR_SYNC_MS; a source
 * whose integration changed (queue, settings, credentials) is replaced.
 */
import type pg from 'pg';
import { eventIdentityFor } from '../connectors/event-identity.ts';
import { monitorEventsAccept, queueMessageRejectedRecord, queueTargets, type QueueTarget } from '../db/sql/monitor.ts';
import type { Logger } from '../log.ts';
import { AzureQueueEventSource } from './azure-queue-source.ts';
import { EventFormatError, parseEventBody } from './events/index.ts';
import { SqsEventSource } from './sqs-source.ts';

/** Hooks of the queue sources (crash tests: a throw between commit and delete keeps the message). */
export interface QueueSourceHooks {
  beforeDelete?(integrationId: number, messageIds: string[]): Promise<void> | void;
}

interface Running {
  key: string;
  stop(): Promise<void>;
}

export interface QueueSourcesHandle {
  /** Re-reads the integrations with an event queue now. */
  sync(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Records the events of one queue message. A message that is not an event body the intake knows is
 * recorded in the audit log (monitor.queue_message_rejected) and resolved, so it is deleted rather than
 * redelivered forever; a database failure throws, so the message stays for redelivery.
 */
export async function handleQueueMessage(pool: pg.Pool, target: QueueTarget, body: string, messageId: string): Promise<{ accepted: number; duplicates: number; skipped: number }> {
  let parsed;
  try {
    const step = eventIdentityFor(target);
    parsed = parseEventBody(JSON.parse(body), { identityOf: step && ((raw) => step(raw)) });
  } catch (err) {
    if (!(err instanceof EventFormatError || err instanceof SyntaxError)) throw err;
    await queueMessageRejectedRecord(pool, { integrationId: target.integration_id, messageId, error: err.message });
    return { accepted: 0, duplicates: 0, skipped: 1 };
  }
  // Handshakes (the S3 test event, an SNS confirmation, which SNS performs itself for SQS) carry no events.
  if (parsed.kind !== 'events' || parsed.events.length === 0) return { accepted: 0, duplicates: 0, skipped: parsed.kind === 'events' ? parsed.skipped : 1 };
  const r = await monitorEventsAccept(pool, target.integration_id, parsed.source, parsed.events);
  return { accepted: r.accepted, duplicates: r.duplicates, skipped: parsed.skipped };
}

function sourceFor(pool: pg.Pool, target: QueueTarget, log: Logger, hooks: QueueSourceHooks): { start(): void; stop(): Promise<void> } {
  const handle = async (body: string, messageId: string) => {
    const r = await handleQueueMessage(pool, target, body, messageId);
    log.debug({ integration_id: target.integration_id, message_id: messageId, ...r }, 'queue message recorded');
  };
  if (target.kind === 's3') {
    const endpoint = target.settings.event_queue_endpoint;
    return new SqsEventSource({
      queueUrl: target.queue_url,
      ...(typeof endpoint === 'string' ? { endpoint } : {}),
      credentials: target.credentials,
      handle,
      log,
      hooks: { beforeDelete: (ids) => hooks.beforeDelete?.(target.integration_id, ids) },
    });
  }
  return new AzureQueueEventSource({
    queueUrl: target.queue_url,
    credentials: target.credentials,
    handle,
    // The source logs each failed poll once, itself (an onError that logged too made two lines of each).
    log: log.child({ integration_id: target.integration_id }),
    afterHandle: (id) => hooks.beforeDelete?.(target.integration_id, [id]),
  });
}

/** Starts polling the event queues of every cloud integration that has one. */
export function startQueueSources(args: { pool: pg.Pool; log: Logger; syncMs: number; hooks?: QueueSourceHooks }): QueueSourcesHandle {
  const log = args.log.child({ component: 'event-queues' });
  const running = new Map<number, Running>();
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let syncing: Promise<void> = Promise.resolve();

  const doSync = async () => {
    if (stopped) return;
    const targets = await queueTargets(args.pool);
    const wanted = new Map(targets.map((t) => [t.integration_id, { target: t, key: JSON.stringify([t.kind, t.settings, t.credentials]) }]));
    for (const [id, r] of running) {
      if (wanted.get(id)?.key !== r.key) {
        running.delete(id);
        await r.stop().catch((err: Error) => log.warn({ integration_id: id, err: err.message }, 'stopping an event queue failed'));
      }
    }
    for (const [id, { target, key }] of wanted) {
      if (running.has(id) || stopped) continue;
      try {
        const source = sourceFor(args.pool, target, log, args.hooks ?? {});
        source.start();
        running.set(id, { key, stop: () => source.stop() });
        log.info({ integration_id: id, queue: target.queue_url }, 'polling the event queue');
      } catch (err) {
        // A queue URL or credentials the source refuses: say so at every sync until it is fixed.
        log.warn({ integration_id: id, err: (err as Error).message }, 'cannot poll the event queue of this integration');
      }
    }
  };
  const sync = (): Promise<void> => {
    syncing = syncing.then(doSync).catch((err: Error) => log.warn({ err: err.message }, 'event queue sync failed; retrying'));
    return syncing;
  };
  const loop = () => {
    if (stopped) return;
    void sync().finally(() => {
      if (!stopped) timer = setTimeout(loop, args.syncMs);
    });
  };
  loop();
  return {
    sync,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await syncing;
      await Promise.all([...running.values()].map((r) => r.stop().catch(() => {})));
      running.clear();
    },
  };
}
