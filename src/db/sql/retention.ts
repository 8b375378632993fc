/**
 * Runtime SQL of retention (sql/functions/85_retention.sql): one chunk of one table, the record of a
 * sweep, what is eligible now, and the advisory lock that keeps sweeps one at a time.
 */
import type pg from 'pg';
import type { Queryable } from './queryable.ts';

/** The tables a sweep deletes from (side_effects go with their scan_results). */
export type RetentionTable =
  | 'scan_results'
  | 'skipped_entries'
  | 'monitor_events'
  | 'monitor_debounce'
  | 'event_signatures'
  | 'audit_log'
  | 'failed_jobs'
  | 'invalid_jobs';

/** Every table a sweep reports a count for, in the order `dsx-connect retention` lists them. */
export const REPORTED_TABLES = ['scan_results', 'side_effects', 'skipped_entries', 'monitor_events', 'monitor_debounce', 'event_signatures', 'audit_log', 'failed_jobs', 'invalid_jobs'] as const;
export type ReportedTable = (typeof REPORTED_TABLES)[number];

// One constant statement per table: the table never reaches the SQL text from outside. Each takes the
// retention in days and the chunk size, but event_signatures, kept for their replay window only.
const CHUNK_SQL: Record<RetentionTable, { sql: string; days: boolean }> = {
  scan_results: { sql: 'select deleted, side_effects_deleted, finished from dsx_private.retention_sweep_scan_results($1, $2)', days: true },
  skipped_entries: { sql: 'select deleted, 0 as side_effects_deleted, finished from dsx_private.retention_sweep_skipped_entries($1, $2)', days: true },
  monitor_events: { sql: 'select deleted, 0 as side_effects_deleted, finished from dsx_private.retention_sweep_monitor_events($1, $2)', days: true },
  monitor_debounce: { sql: 'select deleted, 0 as side_effects_deleted, finished from dsx_private.retention_sweep_monitor_debounce($1, $2)', days: true },
  event_signatures: { sql: 'select deleted, 0 as side_effects_deleted, finished from dsx_private.retention_sweep_event_signatures($1)', days: false },
  audit_log: { sql: 'select deleted, 0 as side_effects_deleted, finished from dsx_private.retention_sweep_audit_log($1, $2)', days: true },
  failed_jobs: { sql: 'select deleted, 0 as side_effects_deleted, finished from dsx_private.retention_sweep_failed_jobs($1, $2)', days: true },
  invalid_jobs: { sql: 'select deleted, 0 as side_effects_deleted, finished from dsx_private.retention_sweep_invalid_jobs($1, $2)', days: true },
};

/** What one chunk did. */
export interface RetentionChunk {
  deleted: number;
  /** Side effects deleted with their results (scan_results only). */
  sideEffectsDeleted: number;
  /** The table is done for this sweep: the chunk was short, or the walk reached rows too young. */
  finished: boolean;
}

/** Deletes one chunk (at most `limit` rows) of `table` older than `days`, in its own transaction. */
export async function retentionChunk(db: Queryable, table: RetentionTable, days: number, limit: number): Promise<RetentionChunk> {
  const chunk = CHUNK_SQL[table];
  const { rows } = await db.query<{ deleted: number; side_effects_deleted: number; finished: boolean }>(chunk.sql, chunk.days ? [days, limit] : [limit]);
  const r = rows[0]!;
  return { deleted: r.deleted, sideEffectsDeleted: r.side_effects_deleted, finished: r.finished };
}

// One sweep per database at a time: a scheduled sweep and `dsx-connect retention sweep` alike.
const SWEEP_LOCK = "hashtextextended('dsx.retention.sweep', 0)";

/** Takes the sweep's session advisory lock on `client`; false when another sweep holds it. */
export async function retentionLockTry(client: pg.PoolClient): Promise<boolean> {
  const { rows } = await client.query<{ ok: boolean }>(`select pg_try_advisory_lock(${SWEEP_LOCK}) as ok`);
  return rows[0]!.ok;
}

/** Releases the sweep's advisory lock held by `client`. */
export async function retentionLockRelease(client: pg.PoolClient): Promise<void> {
  await client.query(`select pg_advisory_unlock(${SWEEP_LOCK})`);
}

/** Records a sweep: each table's count (for `dsx-connect retention`) and one audit entry, retention.swept. */
export async function retentionSweepRecord(db: Queryable, actor: string | null, detail: { deleted: Partial<Record<ReportedTable, number>> } & Record<string, unknown>): Promise<void> {
  await db.query('select dsx_private.record_retention_sweep($1, $2)', [actor, JSON.stringify(detail)]);
}

/** Per table: rows a sweep would delete now (null: kept forever), and what the last sweep deleted and when. */
export interface RetentionTableStatus {
  table_name: ReportedTable;
  eligible: number | null;
  last_deleted: number | null;
  last_swept_at: Date | null;
}

/** What a sweep with these retentions (days; 0 = forever) would delete now, per table (reads whole tables). */
export async function retentionEligible(db: Queryable, days: { results: number; events: number; audit: number; jobs: number }): Promise<RetentionTableStatus[]> {
  const { rows } = await db.query<{ table_name: ReportedTable; eligible: string | null; last_deleted: string | null; last_swept_at: Date | null }>(
    'select table_name, eligible, last_deleted, last_swept_at from dsx_private.retention_eligible($1, $2, $3, $4)',
    [days.results, days.events, days.audit, days.jobs],
  );
  return rows.map((r) => ({
    table_name: r.table_name,
    eligible: r.eligible === null ? null : Number(r.eligible),
    last_deleted: r.last_deleted === null ? null : Number(r.last_deleted),
    last_swept_at: r.last_swept_at,
  }));
}

/** The last sweep's audit entry: when, by whom, and its detail; null when none is recorded. */
export async function retentionLastSweep(db: Queryable): Promise<{ at: Date; actor: string; detail: Record<string, unknown> } | null> {
  const { rows } = await db.query<{ at: Date; actor: string; detail: Record<string, unknown> }>(
    `select a.at, a.actor, a.detail from dsx.audit_log a
      where a.id = (select max(s.last_audit_id) from dsx_private.retention_state s) and a.action = 'retention.swept'`,
  );
  return rows[0] ?? null;
}
