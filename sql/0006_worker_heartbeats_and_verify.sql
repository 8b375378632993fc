-- Crash recovery and the invariant checker.
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

create function dsx_private.worker_heartbeat(p_worker_id text, p_hostname text, p_pid integer, p_roles text[])
returns void language sql as $$
  insert into dsx_private.worker_heartbeats (worker_id, hostname, pid, roles)
  values (p_worker_id, p_hostname, p_pid, p_roles)
  on conflict (worker_id) do update set last_seen_at = now();
$$;

-- Unlocks the jobs of workers whose heartbeat is older than p_dead_after, and of lockers that never
-- had a heartbeat and hold jobs locked for longer than that. Returns the worker ids unlocked.
create function dsx_private.rescue_dead_workers(p_dead_after interval) returns text[] language plpgsql as $$
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

-- The invariant checker: what must hold for a full scan, each check with what it found.
create function dsx.verify_full_scan(p_full_scan_id bigint)
returns table (check_name text, ok boolean, detail text) language plpgsql stable as $$
declare
  f dsx.full_scans;
  c record;
  v_jobs bigint;
  v_dup_effects bigint;
begin
  select * into f from dsx.full_scans where id = p_full_scan_id;
  if not found then
    perform dsx_private.raise('P0002', format('unknown full scan id %s', p_full_scan_id));
  end if;
  select count(*) as discovered,
         count(*) filter (where r.state = 'finalized') as finalized,
         count(distinct r.object_identity) as identities,
         count(*) filter (where r.outcome = 'clean') as clean,
         count(*) filter (where r.outcome = 'malicious') as malicious,
         count(*) filter (where r.outcome = 'unable_to_scan') as unable_to_scan,
         count(*) filter (where r.outcome = 'unsupported_type') as unsupported_type,
         count(*) filter (where r.outcome = 'fetch_failed') as fetch_failed,
         count(*) filter (where r.outcome = 'timeout') as timeout,
         count(*) filter (where r.outcome = 'policy_blocked') as policy_blocked,
         count(*) filter (where r.outcome = 'canceled') as canceled
    into c
    from dsx.scan_results r where r.full_scan_id = p_full_scan_id;

  check_name := 'discovered counter = result rows';
  ok := f.discovered = c.discovered;
  detail := format('counter %s, rows %s', f.discovered, c.discovered);
  return next;
  check_name := 'finalized counter = finalized rows';
  ok := f.finalized = c.finalized;
  detail := format('counter %s, rows %s', f.finalized, c.finalized);
  return next;
  check_name := 'outcome counters = rows per outcome';
  ok := (f.clean_count, f.malicious_count, f.unable_to_scan_count, f.unsupported_type_count, f.fetch_failed_count,
         f.timeout_count, f.policy_blocked_count, f.canceled_count)
      = (c.clean, c.malicious, c.unable_to_scan, c.unsupported_type, c.fetch_failed, c.timeout, c.policy_blocked, c.canceled);
  detail := format('clean %s/%s malicious %s/%s unable_to_scan %s/%s fetch_failed %s/%s timeout %s/%s canceled %s/%s',
                   f.clean_count, c.clean, f.malicious_count, c.malicious, f.unable_to_scan_count, c.unable_to_scan,
                   f.fetch_failed_count, c.fetch_failed, f.timeout_count, c.timeout, f.canceled_count, c.canceled);
  return next;
  check_name := 'each discovered object has exactly one result';
  ok := c.identities = c.discovered;
  detail := format('%s objects, %s results', c.identities, c.discovered);
  return next;
  if f.finished_at is not null then
    check_name := 'every discovered object is finalized';
    ok := c.finalized = c.discovered;
    detail := format('%s of %s finalized', c.finalized, c.discovered);
    return next;
  end if;
  check_name := 'status agrees with the counts';
  ok := case f.status
          when 'completed' then f.enumeration_exhausted and f.finalized = f.discovered and f.finished_at is not null
          when 'running' then f.finished_at is null
          when 'queued' then f.discovered = 0
          else true end;
  detail := format('status %s, enumeration exhausted %s, finished %s', f.status, f.enumeration_exhausted, f.finished_at is not null);
  return next;
  select count(*) into v_dup_effects from (
    select e.scan_result_id, e.kind, e.channel_id from dsx.side_effects e
      join dsx.scan_results r on r.id = e.scan_result_id where r.full_scan_id = p_full_scan_id
     group by 1, 2, 3 having count(*) > 1) d;
  check_name := 'at most one side effect per decision';
  ok := v_dup_effects = 0;
  detail := format('%s decisions with more than one side effect', v_dup_effects);
  return next;
  if f.finished_at is not null then
    select count(*) into v_jobs from graphile_worker._private_jobs j
     where j.payload->>'source_type' = 'full_scan' and j.payload->>'source_entity_id' = p_full_scan_id::text
       and j.payload->>'job_type' in ('full-scan-scope', 'enumerate-scope-page', 'scan-object', 'finalize-scan-object');
    check_name := 'no scan job left queued or locked';
    ok := v_jobs = 0;
    detail := format('%s jobs', v_jobs);
    return next;
  end if;
end $$;
