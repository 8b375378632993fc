/** Runtime SQL for monitoring: event intake, ingestion decisions, secrets and counters. */
import type pg from 'pg';

type Queryable = Pick<pg.Pool, 'query'>;

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

/** Records events and enqueues their MonitorEventIngestJob in one transaction (dsx.accept_monitor_events). */
export async function monitorEventsAccept(db: Queryable, integrationId: number, source: string, events: IncomingEvent[]): Promise<AcceptResult> {
  const { rows } = await db.query<{ r: AcceptResult }>('select dsx.accept_monitor_events($1, $2, $3::jsonb) as r', [
    integrationId,
    source,
    JSON.stringify(events),
  ]);
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

/** The integration's event secret: undefined for an unknown integration, null when it has none. */
export async function eventSecretGet(db: Queryable, integrationId: number): Promise<string | null | undefined> {
  const { rows } = await db.query<{ s: string | null }>(
    'select dsx_private.event_secret(i.id) as s from dsx.integrations i where i.id = $1',
    [integrationId],
  );
  return rows.length === 0 ? undefined : rows[0]!.s;
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
