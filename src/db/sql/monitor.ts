/** Runtime SQL for monitoring: event intake, ingestion decisions, secrets and counters. */
import type { Queryable } from './queryable.ts';


/** One event as the intake normalized it (see src/monitor/events/). */
export interface IncomingEvent {
  external_id: string | null;
  event_type: 'created' | 'modified' | 'deleted';
  container: string | null;
  object_identity: string;
  etag: string | null;
  size: number | null;
  occurred_at: string | null;
}

export interface AcceptResult {
  accepted: number;
  duplicates: number;
  event_ids: number[];
}

/** A verified signature of an intake request (X-DSX-Timestamp and X-DSX-Signature), to remember. */
export interface EventSignature {
  /** The HMAC-SHA256 of "<timestamp>.<body>" (32 bytes). */
  digest: Buffer;
  /** X-DSX-Timestamp, in unix seconds. */
  signedAt: number;
  /** How long past signedAt the signature is remembered, and its request acceptable: DSX_EVENT_MAX_SKEW_S. */
  windowS: number;
}

/** SQLSTATE raised by dsx_private.remember_event_signature: this signed request was accepted before. */
export const SIGNATURE_REPLAYED = 'DX409';
/** SQLSTATE raised by dsx_private.remember_event_signature: the timestamp is older than the window. */
export const SIGNATURE_EXPIRED = 'DX401';

function signatureParams(integrationId: number, signature: EventSignature): unknown[] {
  return [integrationId, signature.digest, new Date(signature.signedAt * 1000).toISOString(), signature.windowS];
}

/**
 * Records events and enqueues their MonitorEventIngestJob in one transaction (dsx.accept_monitor_events);
 * with a signature, remembers it in the same transaction or refuses a replay
 * (dsx_private.accept_signed_monitor_events).
 */
export async function monitorEventsAccept(
  db: Queryable,
  integrationId: number,
  source: string,
  events: IncomingEvent[],
  signature?: EventSignature,
): Promise<AcceptResult> {
  const { rows } = signature
    ? await db.query<{ r: AcceptResult }>('select dsx_private.accept_signed_monitor_events($1, $5, $6::jsonb, $2, $3, $4) as r', [
        ...signatureParams(integrationId, signature),
        source,
        JSON.stringify(events),
      ])
    : await db.query<{ r: AcceptResult }>('select dsx.accept_monitor_events($1, $2, $3::jsonb) as r', [integrationId, source, JSON.stringify(events)]);
  const r = rows[0]!.r;
  return { accepted: r.accepted, duplicates: r.duplicates, event_ids: r.event_ids.map(Number) };
}

export interface PendingEvent {
  id: number;
  integration_id: number;
  event_type: string;
  container: string | null;
  object_identity: string;
  scope_id: number | null;
}

/** The events of an ingest job still waiting for it ('received', or 'deferred' for a trailing job). */
export async function monitorEventsPending(db: Queryable, ids: number[], trailing: boolean): Promise<PendingEvent[]> {
  const { rows } = await db.query(
    `select id::float8 as id, integration_id::float8 as integration_id, event_type, container, object_identity,
            scope_id::float8 as scope_id
       from dsx_private.monitor_events_pending($1::bigint[], $2)`,
    [ids, trailing],
  );
  return rows as PendingEvent[];
}

export interface IngestDecision {
  event_id: number;
  scope_id: number | null;
  action: 'scan' | 'ignore';
  reason: string | null;
}

/** Applies ingest decisions: scans, deferrals (debounce), ignores and counters, in one transaction. */
export async function monitorEventsIngest(
  db: Queryable,
  args: { decisions: IngestDecision[]; trailing: boolean; jobId: string; debounceMs: number; scanMaxAttempts: number },
): Promise<{ scanned: number; deferred: number; ignored: number }> {
  const { rows } = await db.query('select dsx_private.ingest_monitor_events($1::jsonb, $2, $3, $4, $5) as r', [
    JSON.stringify(args.decisions),
    args.trailing,
    args.jobId,
    args.debounceMs,
    args.scanMaxAttempts,
  ]);
  return rows[0].r;
}

/** What the intake needs of an integration: its kind and event secret (null when it has none); undefined when unknown. */
export async function eventIntakeTarget(
  db: Queryable,
  integrationId: number,
): Promise<{ kind: string; settings: Record<string, unknown>; secret: string | null } | undefined> {
  const { rows } = await db.query<{ kind: string; settings: Record<string, unknown>; secret: string | null }>(
    'select i.kind, i.settings, dsx_private.event_secret(i.id) as secret from dsx.integrations i where i.id = $1',
    [integrationId],
  );
  return rows[0];
}

/** Remembers the signature of a signed intake request that records no events, or refuses a replay. */
export async function eventSignatureRemember(db: Queryable, integrationId: number, signature: EventSignature): Promise<void> {
  await db.query('select dsx_private.remember_event_signature($1, $2, $3, $4)', signatureParams(integrationId, signature));
}

/** Records an SNS subscription handshake in the audit log (and its signature, if signed, in the same statement). */
export async function snsSubscriptionRecord(
  db: Queryable,
  args: { integrationId: number; type: string; topicArn: string; subscribeUrl: string | null },
  signature?: EventSignature,
): Promise<void> {
  const action = args.type === 'SubscriptionConfirmation' ? 'monitor.sns_subscription_confirmation' : 'monitor.sns_unsubscribe_confirmation';
  const detail = JSON.stringify({ integration_id: args.integrationId, topic_arn: args.topicArn, subscribe_url: args.subscribeUrl });
  const sig = signature ? signatureParams(args.integrationId, signature) : [args.integrationId, null, null, null];
  await db.query(`select dsx_private.audit('sns', $5, null, null, null, $6::jsonb) from dsx_private.remember_event_signature($1, $2, $3, $4)`, [
    ...sig,
    action,
    detail,
  ]);
}

/** Returns the integration's event secret, creating it (or replacing it when `rotate`) from `candidate`. */
export async function eventSecretEnsure(db: Queryable, integrationId: number, rotate: boolean, candidate: string): Promise<string> {
  const { rows } = await db.query<{ s: string }>('select dsx_private.ensure_event_secret($1, $2, $3) as s', [integrationId, rotate, candidate]);
  return rows[0]!.s;
}

export interface MonitorOverview {
  scope_id: number;
  scope_name: string;
  monitor: boolean;
  enabled: boolean;
  events_received: number;
  events_scanned: number;
  events_coalesced: number;
  ignored_deleted: number;
  ignored_excluded: number;
  ignored_disabled: number;
  last_event_at: string | null;
}

/** Monitoring per scope (dsx.monitor_overview). */
export async function monitorOverview(db: Queryable): Promise<MonitorOverview[]> {
  const { rows } = await db.query(
    `select scope_id::float8 as scope_id, scope_name, monitor, enabled, events_received::float8 as events_received,
            events_scanned::float8 as events_scanned, events_coalesced::float8 as events_coalesced,
            ignored_deleted::float8 as ignored_deleted, ignored_excluded::float8 as ignored_excluded,
            ignored_disabled::float8 as ignored_disabled, last_event_at
       from dsx.monitor_overview order by scope_id`,
  );
  return rows as MonitorOverview[];
}

/** Turns monitoring on or off for a scope (dsx.set_scope_monitor). */
export async function scopeSetMonitor(db: Queryable, scopeId: number, monitor: boolean): Promise<void> {
  await db.query('select dsx.set_scope_monitor($1, $2)', [scopeId, monitor]);
}

export interface WatchTarget {
  scope_id: number;
  integration_id: number;
  /** Absolute directory of the integration (settings.root). */
  base: string;
  quarantine_dir: string | null;
  /** Scope root relative to the integration. */
  root: string;
}

/** Enabled, monitored scopes of filesystem integrations: what the watcher watches. */
export async function watchTargets(db: Queryable): Promise<WatchTarget[]> {
  const { rows } = await db.query(
    `select s.id::float8 as scope_id, i.id::float8 as integration_id, i.settings->>'root' as base,
            i.settings->>'quarantine_dir' as quarantine_dir, s.root
       from dsx.scopes s join dsx.integrations i on i.id = s.integration_id
      where i.kind = 'filesystem' and s.enabled and s.monitor
      order by s.id`,
  );
  return rows as WatchTarget[];
}

/** An integration whose storage events arrive through a queue (settings.event_queue_url). */
export interface QueueTarget {
  integration_id: number;
  kind: 's3' | 'azure_blob';
  settings: Record<string, unknown>;
  queue_url: string;
  credentials: unknown;
}

/** Cloud integrations with an event queue: what the monitor role polls. */
export async function queueTargets(db: Queryable): Promise<QueueTarget[]> {
  const { rows } = await db.query(
    `select i.id::float8 as integration_id, i.kind, i.settings, i.settings->>'event_queue_url' as queue_url,
            dsx_private.integration_credentials_get(i.id) as credentials
       from dsx.integrations i
      where i.kind in ('s3', 'azure_blob') and coalesce(i.settings->>'event_queue_url', '') <> ''
      order by i.id`,
  );
  return rows as QueueTarget[];
}

/** Records a queue message the intake could not parse (it is then deleted from the queue). */
export async function queueMessageRejectedRecord(db: Queryable, args: { integrationId: number; messageId: string; error: string }): Promise<void> {
  await db.query(`select dsx_private.audit('monitor', 'monitor.queue_message_rejected', null, null, null, $1::jsonb)`, [
    JSON.stringify({ integration_id: args.integrationId, message_id: args.messageId, error: args.error }),
  ]);
}
