-- Repeatable: the one current definition of each function below, with its attributes, grants and
-- smart tags. Applied by `dsx-connect migrate` whenever a file in sql/functions changes (rules in
-- sql/README.md).
--
-- Worker liveness. graphile-worker releases the jobs of a crashed worker only after 4 hours. Every
-- worker process records a heartbeat; the survivors unlock the jobs of workers silent for longer than a
-- threshold (force_unlock_workers). A live worker's jobs are never unlocked, however long they run,
-- because its heartbeat stays fresh.

create or replace function dsx_private.worker_heartbeat(p_worker_id text, p_hostname text, p_pid integer, p_roles text[])
returns void language sql set search_path = pg_catalog, pg_temp as $$
  insert into dsx_private.worker_heartbeats (worker_id, hostname, pid, roles)
  values (p_worker_id, p_hostname, p_pid, p_roles)
  on conflict (worker_id) do update set last_seen_at = now();
$$;

-- Unlocks the jobs of workers whose heartbeat is older than p_dead_after, and of lockers that never
-- had a heartbeat and hold jobs locked for longer than that. Returns the worker ids unlocked.
create or replace function dsx_private.rescue_dead_workers(p_dead_after interval) returns text[] language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
  v_dead text[];
begin
  with dead as (
    delete from dsx_private.worker_heartbeats h where h.last_seen_at < now() - p_dead_after returning h.worker_id
  ), orphans as (
    select distinct j.locked_by as worker_id
      from graphile_worker._private_jobs j
     where j.locked_by is not null and j.locked_at < now() - p_dead_after
       and not exists (select 1 from dsx_private.worker_heartbeats h where h.worker_id = j.locked_by)
  )
  select coalesce(array_agg(distinct worker_id), '{}') into v_dead
    from (select worker_id from dead union all select worker_id from orphans) w;
  if cardinality(v_dead) > 0 then
    perform graphile_worker.force_unlock_workers(v_dead);
    perform dsx_private.audit('dsx-connect', 'workers.rescued', null, null, null, jsonb_build_object('worker_ids', v_dead));
  end if;
  return v_dead;
end $$;

-- A worker process's view of the scanner, recorded on every change of state or of its reason (and
-- refreshed with the heartbeat). A change of state is audited and announced to the subscribers of every running full scan, whose progress
-- events carry the scanner's state.
create or replace function dsx_private.report_scanner_status(
  p_process_id text, p_hostname text, p_pid integer, p_dsxa_url text, p_state text, p_since timestamptz, p_error text
) returns void language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
  v_old text;
  r record;
begin
  select s.state into v_old from dsx.scanner_status s where s.process_id = p_process_id for update;
  insert into dsx.scanner_status as s (process_id, hostname, pid, dsxa_url, state, since, error, last_seen_at)
  values (p_process_id, p_hostname, p_pid, p_dsxa_url, p_state, p_since, p_error, now())
  on conflict (process_id) do update
     set state = excluded.state, since = excluded.since, error = excluded.error, dsxa_url = excluded.dsxa_url,
         last_seen_at = now();
  if v_old is distinct from p_state and not (v_old is null and p_state = 'ok') then
    perform dsx_private.audit('dsx-connect', 'scanner.' || p_state, null, null, null,
                              jsonb_build_object('process_id', p_process_id, 'dsxa_url', p_dsxa_url, 'error', p_error));
    for r in select f.id, f.status from dsx.full_scans f where f.status = 'running' loop
      perform dsx_private.notify_full_scan(r.id, r.status);
    end loop;
  end if;
end $$;

-- Keeps a process's scanner row fresh (with its heartbeat); rows of processes silent for longer than
-- p_dead_after are dropped, so a dead worker's view of the scanner is not shown.
create or replace function dsx_private.touch_scanner_status(p_process_id text, p_dead_after interval)
returns void language sql set search_path = pg_catalog, pg_temp as $$
  update dsx.scanner_status set last_seen_at = now() where process_id = p_process_id;
  delete from dsx.scanner_status where last_seen_at < now() - p_dead_after;
$$;

-- Records a job whose payload can never be valid (its task then completes it instead of failing it).
-- A batch job's envelopes are recorded one by one. The payload is kept as JSON when it is JSON.
create or replace function dsx_private.record_invalid_job(p_task text, p_worker_job_id bigint, p_error text, p_payload text)
returns void language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
  v_payload jsonb;
begin
  begin
    v_payload := p_payload::jsonb;
  exception when others then
    v_payload := to_jsonb(left(p_payload, 10000));
  end;
  insert into dsx.invalid_jobs (task, worker_job_id, error, payload) values (p_task, p_worker_job_id, left(p_error, 2000), v_payload);
  perform dsx_private.audit('dsx-connect', 'job.invalid_payload', null, null, null,
                            jsonb_build_object('task', p_task, 'worker_job_id', p_worker_job_id, 'error', left(p_error, 2000)));
end $$;
