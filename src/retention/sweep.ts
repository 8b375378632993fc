/**
 * One retention sweep: every table family older than its retention is deleted in chunks, each chunk its
 * own short transaction (sql/functions/85_retention.sql), round-robin over the tables so that one large
 * backlog does not starve the others, until every table is done or the time budget is spent. One sweep
 * per database at a time (an advisory lock); a second one started meanwhile returns at once. The sweep
 * logs one info line and writes one audit entry (retention.swept) with the counts.
 */
import type pg from 'pg';
import type { RetentionConfig } from '../config.ts';
import {
  retentionChunk,
  retentionLockRelease,
  retentionLockTry,
  retentionSweepRecord,
  type ReportedTable,
  type RetentionTable,
} from '../db/sql/retention.ts';
import type { Logger } from '../log.ts';

/**
 * Rows per chunk. A chunk of 1,000 keeps each transaction to a few tens of milliseconds and its WAL to
 * a few hundred kilobytes, while the per-call overhead stays small against the rows it deletes.
 */
export const DEFAULT_CHUNK_ROWS = 1000;
/**
 * Time one sweep may take. At 100 objects/s an hourly sweep has ~360,000 rows of each of results,
 * events and audit to delete, a minute or two of chunks; ten minutes leaves room to catch up after a
 * change of retention, and a larger backlog is finished by the next sweeps.
 */
export const DEFAULT_BUDGET_MS = 10 * 60_000;

/** The tables of each round, and the retention (days) that applies to each; null: its replay window. */
const TABLES: { table: RetentionTable; days: (r: RetentionConfig) => number | null }[] = [
  // Events before results: an event pointing to a result is then gone before the result is deleted.
  { table: 'monitor_events', days: (r) => r.eventsDays },
  { table: 'monitor_debounce', days: (r) => r.eventsDays },
  { table: 'event_signatures', days: () => null },
  { table: 'scan_results', days: (r) => r.resultsDays },
  { table: 'skipped_entries', days: (r) => r.resultsDays },
  { table: 'audit_log', days: (r) => r.auditDays },
  { table: 'failed_jobs', days: (r) => r.jobsDays },
  { table: 'invalid_jobs', days: (r) => r.jobsDays },
];

export interface SweepOptions {
  /** The audit entry's actor; null: the session's (the CLI's OS user). */
  actor: string | null;
  /** The schedule slot this sweep runs for (a scheduled sweep). */
  slot?: { ts: string; backfilled: boolean };
  chunkRows?: number;
  budgetMs?: number;
  /** Stops the sweep between two chunks (a worker shutting down); what was done is recorded. */
  signal?: AbortSignal;
  /** Milliseconds, for the budget; injectable for tests. */
  clock?: () => number;
}

export interface SweepReport {
  /** Another sweep held the lock: nothing was done, nothing recorded. */
  skipped: boolean;
  /** Rows deleted per table (tables kept forever are absent). */
  deleted: Partial<Record<ReportedTable, number>>;
  /** Every table reached its end (false: the budget ran out or the sweep was stopped; the next sweep goes on). */
  finished: boolean;
  chunks: number;
  durationMs: number;
}

/** Runs one sweep on `pool` with the retentions of `retention`. */
export async function sweepRetention(pool: pg.Pool, retention: RetentionConfig, log: Logger, opts: SweepOptions): Promise<SweepReport> {
  const clock = opts.clock ?? Date.now;
  const chunkRows = opts.chunkRows ?? DEFAULT_CHUNK_ROWS;
  const budgetMs = opts.budgetMs ?? DEFAULT_BUDGET_MS;
  const started = clock();
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    if (!(await retentionLockTry(client))) {
      log.info({ slot: opts.slot?.ts }, 'retention sweep skipped: another sweep is running');
      return { skipped: true, deleted: {}, finished: false, chunks: 0, durationMs: clock() - started };
    }
    try {
      const active = TABLES.flatMap(({ table, days }) => {
        const d = days(retention);
        return d === 0 ? [] : [{ table, days: d ?? 0 }];
      });
      const deleted: Partial<Record<ReportedTable, number>> = {};
      for (const { table } of active) deleted[table] = 0;
      if (active.some((a) => a.table === 'scan_results')) deleted.side_effects = 0;
      let chunks = 0;
      while (active.length > 0 && clock() - started < budgetMs && !opts.signal?.aborted) {
        for (const a of [...active]) {
          const c = await retentionChunk(client, a.table, a.days, chunkRows);
          chunks++;
          deleted[a.table] = (deleted[a.table] ?? 0) + c.deleted;
          if (c.sideEffectsDeleted) deleted.side_effects = (deleted.side_effects ?? 0) + c.sideEffectsDeleted;
          if (c.finished) active.splice(active.indexOf(a), 1);
        }
      }
      const report: SweepReport = { skipped: false, deleted, finished: active.length === 0, chunks, durationMs: clock() - started };
      await retentionSweepRecord(client, opts.actor, {
        deleted,
        finished: report.finished,
        chunks,
        duration_ms: report.durationMs,
        retention_days: { results: retention.resultsDays, events: retention.eventsDays, audit: retention.auditDays, jobs: retention.jobsDays },
        ...(opts.slot && { slot: opts.slot.ts, backfilled: opts.slot.backfilled }),
      });
      const total = Object.values(deleted).reduce((n, x) => n + (x ?? 0), 0);
      log.info(
        { deleted, finished: report.finished, chunks, duration_ms: report.durationMs, slot: opts.slot?.ts },
        `retention sweep: ${total} rows deleted${report.finished ? '' : ' (not finished: the next sweep goes on)'}`,
      );
      return report;
    } finally {
      await retentionLockRelease(client);
    }
  } catch (err) {
    broken = err as Error;
    throw err;
  } finally {
    // A connection that failed may still hold the lock: it is closed rather than reused.
    client.release(broken);
  }
}
