/** Runtime SQL for worker processes: heartbeats, rescue of dead workers' jobs, the job table's statistics, session locks. */
import type { Queryable } from './queryable.ts';

/** Records that a worker pool is alive (dsx_private.worker_heartbeat). */
export async function workerHeartbeat(db: Queryable, args: { workerId: string; hostname: string; pid: number; roles: string[] }): Promise<void> {
  await db.query('select dsx_private.worker_heartbeat($1, $2, $3, $4)', [args.workerId, args.hostname, args.pid, args.roles]);
}

/** Unlocks the jobs of workers silent for longer than `deadAfterMs`; returns their ids (dsx_private.rescue_dead_workers). */
export async function rescueDeadWorkers(db: Queryable, deadAfterMs: number): Promise<string[]> {
  const { rows } = await db.query<{ ids: string[] | null }>('select dsx_private.rescue_dead_workers(make_interval(secs => $1)) as ids', [deadAfterMs / 1000]);
  return rows[0]?.ids ?? [];
}

/** Forgets a worker that stopped cleanly. */
export async function workerForget(db: Queryable, workerId: string): Promise<void> {
  await db.query('delete from dsx_private.worker_heartbeats where worker_id = $1', [workerId]);
}

/** Returns the jobs graphile-worker pools (by their worker ids) still hold to the queue. */
export async function forceUnlockWorkers(db: Queryable, workerIds: string[]): Promise<void> {
  await db.query('select graphile_worker.force_unlock_workers($1)', [workerIds]);
}

/**
 * Whether the job table's planner statistics are missing or stale: never analyzed with at least
 * `minRows` live rows, or at least `minChanges` changes since the last analyze and more than `growth`
 * times its size then.
 */
export async function jobTableStatsStale(db: Queryable, args: { minRows: number; minChanges: number; growth: number }): Promise<boolean> {
  const { rows } = await db.query<{ stale: boolean }>(
    `select (c.reltuples < 0 and s.n_live_tup >= $1)
            or (s.n_mod_since_analyze >= $2 and s.n_mod_since_analyze > $3 * greatest(c.reltuples, 0)) as stale
       from pg_class c join pg_stat_all_tables s on s.relid = c.oid
      where c.oid = 'graphile_worker._private_jobs'::regclass`,
    [args.minRows, args.minChanges, args.growth],
  );
  return rows[0]?.stale ?? false;
}

/** Refreshes the job table's statistics without waiting for a lock. */
export async function analyzeJobTable(db: Queryable): Promise<void> {
  await db.query('analyze (skip_locked) graphile_worker._private_jobs');
}

/** Takes a session-level advisory lock if free (held until unlocked or the session ends). */
export async function tryAdvisoryLock(db: Queryable, key: bigint): Promise<boolean> {
  const { rows } = await db.query<{ ok: boolean }>('select pg_try_advisory_lock($1) as ok', [key.toString()]);
  return rows[0]!.ok;
}

/** Releases a session-level advisory lock taken with tryAdvisoryLock. */
export async function advisoryUnlock(db: Queryable, key: bigint): Promise<void> {
  await db.query('select pg_advisory_unlock($1)', [key.toString()]);
}
