-- Crash recovery: worker heartbeats (the sweep and the invariant checker are in sql/functions,
-- 60_workers.sql and 80_verify.sql).
--
-- graphile-worker releases the jobs of a crashed worker only after 4 hours. Every worker process
-- records a heartbeat here; the survivors unlock the jobs of workers silent for longer than a
-- threshold (force_unlock_workers). A live worker's jobs are never unlocked, however long they run,
-- because its heartbeat stays fresh.
create table dsx_private.worker_heartbeats (
  -- The graphile-worker pool id that appears in graphile_worker._private_jobs.locked_by.
  worker_id text primary key,
  hostname text not null,
  pid integer not null,
  roles text[] not null,
  started_at timestamptz not null default now(),
  last_seen_at timestamptz not null default now()
);
