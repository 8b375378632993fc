-- Repeatable: the one current definition of each function below, with its attributes, grants and
-- smart tags. Applied by `dsx-connect migrate` whenever a file in sql/functions changes (rules in
-- sql/README.md).
--
-- The invariant checker: what must hold for a full scan, each check with what it found. A read-only
-- query for viewers too; it reads graphile-worker's tables, so it runs with its owner's rights.

-- Every check but the queue's, which dsx.verify_full_scan makes itself (it looks into batch jobs).
create or replace function dsx_private.verify_full_scan_checks(p_full_scan_id bigint)
returns table (check_name text, ok boolean, detail text) language plpgsql stable security definer set search_path = pg_catalog, pg_temp as $$
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

  -- Results the retention sweep removed (all finalized) still count in the counters.
  check_name := 'discovered counter = result rows';
  ok := f.discovered = c.discovered + f.results_removed;
  detail := format('counter %s, rows %s', f.discovered, c.discovered)
            || case when f.results_removed > 0 then format(' + %s removed by retention', f.results_removed) else '' end;
  return next;
  check_name := 'finalized counter = finalized rows';
  ok := f.finalized = c.finalized + f.results_removed;
  detail := format('counter %s, rows %s', f.finalized, c.finalized)
            || case when f.results_removed > 0 then format(' + %s removed by retention', f.results_removed) else '' end;
  return next;
  -- Which outcomes the removed rows had is not kept: then each counter is at least its rows, and the
  -- counters add up to the rows plus the removed ones.
  check_name := 'outcome counters = rows per outcome';
  ok := case when f.results_removed = 0 then
          (f.clean_count, f.malicious_count, f.unable_to_scan_count, f.unsupported_type_count, f.fetch_failed_count,
           f.timeout_count, f.policy_blocked_count, f.canceled_count)
          = (c.clean, c.malicious, c.unable_to_scan, c.unsupported_type, c.fetch_failed, c.timeout, c.policy_blocked, c.canceled)
        else
          f.clean_count >= c.clean and f.malicious_count >= c.malicious and f.unable_to_scan_count >= c.unable_to_scan
          and f.unsupported_type_count >= c.unsupported_type and f.fetch_failed_count >= c.fetch_failed
          and f.timeout_count >= c.timeout and f.policy_blocked_count >= c.policy_blocked and f.canceled_count >= c.canceled
          and f.clean_count + f.malicious_count + f.unable_to_scan_count + f.unsupported_type_count + f.fetch_failed_count
              + f.timeout_count + f.policy_blocked_count + f.canceled_count = c.finalized + f.results_removed
        end;
  detail := format('clean %s/%s malicious %s/%s unable_to_scan %s/%s fetch_failed %s/%s timeout %s/%s canceled %s/%s',
                   f.clean_count, c.clean, f.malicious_count, c.malicious, f.unable_to_scan_count, c.unable_to_scan,
                   f.fetch_failed_count, c.fetch_failed, f.timeout_count, c.timeout, f.canceled_count, c.canceled)
            || case when f.results_removed > 0 then format(' (+ %s removed by retention)', f.results_removed) else '' end;
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
    -- Every pipeline task, the monitor lane's included: a full scan's jobs do not use those names
    -- today, but the check should not depend on which lane a producer chooses.
    select count(*) into v_jobs from graphile_worker._private_jobs j
     where j.payload->>'source_type' = 'full_scan' and j.payload->>'source_entity_id' = p_full_scan_id::text
       and j.payload->>'job_type' in ('full-scan-scope', 'enumerate-scope-page', 'scan-object', 'finalize-scan-object',
                                      'monitor-scan-object', 'monitor-finalize-scan-object');
    check_name := 'no scan job left queued or locked';
    ok := v_jobs = 0;
    detail := format('%s jobs', v_jobs);
    return next;
  end if;
end $$;
revoke execute on function dsx_private.verify_full_scan_checks(bigint) from public;
grant execute on function dsx_private.verify_full_scan_checks(bigint) to dsx_viewer;

-- The checks, with "no scan job left queued or locked" looking at every envelope of every queued job
-- (finalize jobs are batch jobs).
create or replace function dsx.verify_full_scan(p_full_scan_id bigint)
returns table (check_name text, ok boolean, detail text) language sql stable security definer
set search_path = pg_catalog, pg_temp as $$
  select c.check_name, c.ok, c.detail from (
    select v.check_name, v.ok, v.detail, v.n
      from dsx_private.verify_full_scan_checks(p_full_scan_id) with ordinality as v(check_name, ok, detail, n)
     where v.check_name <> 'no scan job left queued or locked'
    union all
    select 'no scan job left queued or locked', count(*) = 0, format('%s jobs', count(*)), 1000
      from graphile_worker._private_jobs j
     cross join lateral json_array_elements(case when json_typeof(j.payload) = 'array' then j.payload
                                                 else json_build_array(j.payload) end) e
     where e->>'source_type' = 'full_scan' and e->>'source_entity_id' = p_full_scan_id::text
       and e->>'job_type' in ('full-scan-scope', 'enumerate-scope-page', 'scan-object', 'finalize-scan-object',
                              'monitor-scan-object', 'monitor-finalize-scan-object')
    having exists (select 1 from dsx.full_scans f where f.id = p_full_scan_id and f.finished_at is not null)
  ) c order by c.n
$$;
revoke execute on function dsx.verify_full_scan(bigint) from public;
grant execute on function dsx.verify_full_scan(bigint) to dsx_viewer;
