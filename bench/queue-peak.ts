/**
 * The exact largest number of rows graphile-worker's job table held during a run, which sampling can
 * miss (a page adds 1,000 scan jobs in one commit and the scan process takes them within milliseconds).
 *
 * Bench-only statement triggers on `graphile_worker._private_jobs`, in the throwaway database, append one
 * row per inserting or deleting statement to an unlogged table: the rows it added or removed, counted
 * from its transition table. Nothing is updated in place, so the triggers add no lock that concurrent
 * transactions would wait on (a shared counter row caps commits near 940/s here). Afterwards, the net
 * change of each transaction is summed in commit order (pg_xact_commit_timestamp of the rows' xmin: the
 * bench server runs with track_commit_timestamp=on), and the largest running sum is the peak.
 */
import type pg from 'pg';

const SETUP = `
create schema if not exists bench;
create unlogged table if not exists bench.job_row_changes (delta integer not null);
create or replace function bench.tg_job_rows_added() returns trigger language plpgsql as $$
begin
  insert into bench.job_row_changes (delta) select count(*) from new_rows having count(*) > 0;
  return null;
end $$;
create or replace function bench.tg_job_rows_removed() returns trigger language plpgsql as $$
begin
  insert into bench.job_row_changes (delta) select -count(*) from old_rows having count(*) > 0;
  return null;
end $$;
create or replace trigger bench_job_rows_added after insert on graphile_worker._private_jobs
  referencing new table as new_rows for each statement execute function bench.tg_job_rows_added();
create or replace trigger bench_job_rows_removed after delete on graphile_worker._private_jobs
  referencing old table as old_rows for each statement execute function bench.tg_job_rows_removed();
`;

/** Installs the triggers; returns the rows in the table at that moment (the baseline of the sums). */
export async function queuePeakInstall(pool: pg.Pool): Promise<number> {
  await pool.query(SETUP);
  await pool.query('truncate bench.job_row_changes');
  const { rows } = await pool.query<{ n: number }>('select count(*)::int as n from graphile_worker._private_jobs');
  return rows[0]!.n;
}

/**
 * The largest number of job rows at any commit since install, and how many statements changed the
 * table; null when commit timestamps are off (a server of your own without track_commit_timestamp).
 */
export async function queuePeakRead(pool: pg.Pool, baseline: number): Promise<{ peak_rows: number; statements: number } | null> {
  const { rows: on } = await pool.query<{ v: string }>(`select current_setting('track_commit_timestamp') as v`);
  if (on[0]!.v !== 'on') return null;
  // Rows of one transaction share a commit time (its subtransactions' xids too), so the window's peers
  // are summed together: the running sum is the table's row count as of each commit.
  const { rows } = await pool.query<{ peak: number | null; statements: number }>(
    `select max(running)::int as peak, sum(n)::int as statements
       from (select sum(sum(delta)) over (order by ts) as running, count(*) as n
               from (select pg_xact_commit_timestamp(xmin) as ts, delta from bench.job_row_changes) c
              group by ts) x`,
  );
  return { peak_rows: baseline + Math.max(0, rows[0]!.peak ?? 0), statements: rows[0]!.statements ?? 0 };
}

/** Removes the triggers (before the table sizes are read, so they do not count the bench's own table). */
export async function queuePeakRemove(pool: pg.Pool): Promise<void> {
  await pool.query(`drop trigger if exists bench_job_rows_added on graphile_worker._private_jobs;
    drop trigger if exists bench_job_rows_removed on graphile_worker._private_jobs;
    drop schema if exists bench cascade`);
}
