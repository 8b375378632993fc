/**
 * Worker liveness: each worker pool records a heartbeat, and sweeps for pools that went silent
 * (SIGKILL, host loss), unlocking their jobs so they run again within deadAfter + interval — instead
 * of graphile-worker's 4 hours. A live pool's jobs are never unlocked: its heartbeat stays fresh.
 */
import os from 'node:os';
import type pg from 'pg';
import { rescueDeadWorkers, workerForget, workerHeartbeat } from '../db/sql/workers.ts';
import type { Logger } from '../log.ts';

export interface HeartbeatOptions {
  intervalMs: number;
  deadAfterMs: number;
}

export function startHeartbeat(pool: pg.Pool, workerId: string, roles: string[], opts: HeartbeatOptions, log: Logger): { stop(): Promise<void> } {
  let stopped = false;
  const beat = async () => {
    try {
      await workerHeartbeat(pool, { workerId, hostname: os.hostname(), pid: process.pid, roles });
      const rescued = await rescueDeadWorkers(pool, opts.deadAfterMs);
      if (rescued.length) log.warn({ workers: rescued }, 'unlocked the jobs of workers that stopped heartbeating');
    } catch (err) {
      if (!stopped) log.warn({ err: (err as Error).message }, 'heartbeat failed (database unreachable?); retrying');
    }
  };
  void beat();
  const timer = setInterval(beat, opts.intervalMs);
  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      await workerForget(pool, workerId).catch(() => {});
    },
  };
}
