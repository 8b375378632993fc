/**
 * Planner statistics for graphile-worker's job table, kept fresh while a full scan fills it.
 *
 * Without statistics (a new database, or a restore) PostgreSQL plans graphile-worker's job fetch with
 * default selectivities and picks a sequential scan and sort of the whole table: measured with 100,000
 * queued jobs, 52 ms per fetch instead of 0.3 ms, which cut the queue's throughput by four. Autovacuum
 * analyzes the table only after its naptime (a minute), while an enumeration queues thousands of
 * jobs a second. So enumeration calls `refresh()` after each page: at most every few seconds it reads
 * the table's counters and runs ANALYZE when the table was never analyzed or has grown well past its
 * statistics. A role that may not analyze the table gets a warning from PostgreSQL and nothing else.
 */
import type { Logger } from '../log.ts';
import type { Queryable } from './sql/queryable.ts';
import { analyzeJobTable, jobTableStatsStale } from './sql/workers.ts';

/** Never analyzed and at least this many rows, or this many changes and 4x the analyzed rows. */
const MIN_ROWS = 1_000;
const MIN_CHANGES = 10_000;
const GROWTH = 4;

export class QueueStatistics {
  readonly #pool: Queryable;
  readonly #log: Logger;
  readonly #minIntervalMs: number;
  #lastCheck = 0;
  #running: Promise<boolean> | null = null;

  constructor(pool: Queryable, log: Logger, minIntervalMs = 2_000) {
    this.#pool = pool;
    this.#log = log;
    this.#minIntervalMs = minIntervalMs;
  }

  /** Analyzes the job table when its statistics are missing or stale; true when it did. Never throws. */
  refresh(): Promise<boolean> {
    const now = Date.now();
    if (this.#running) return this.#running;
    if (now - this.#lastCheck < this.#minIntervalMs) return Promise.resolve(false);
    this.#lastCheck = now;
    this.#running = this.#refresh().finally(() => {
      this.#running = null;
    });
    return this.#running;
  }

  async #refresh(): Promise<boolean> {
    try {
      if (!(await jobTableStatsStale(this.#pool, { minRows: MIN_ROWS, minChanges: MIN_CHANGES, growth: GROWTH }))) return false;
      const t0 = performance.now();
      await analyzeJobTable(this.#pool);
      this.#log.debug({ ms: Math.round(performance.now() - t0) }, 'analyzed the job table (statistics were missing or stale)');
      return true;
    } catch (err) {
      this.#log.debug({ err: (err as Error).message }, 'could not refresh the job table statistics');
      return false;
    }
  }
}
