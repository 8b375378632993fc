-- Finalization at the queue's pace. Measured with pg_stat_statements on a 20,000-object full scan
-- (2 cores, instant scanner, 1,430 objects/s before this migration), per object:
--   * 83 us inserting job rows, 163 us fetching them: one FinalizeScanObjectJob row per object doubled
--     the queue's work. Scan batches now emit their FinalizeScanObjectJobs as ONE graphile-worker
--     "batch job" (a payload that is an array of per-object envelopes, each unchanged). The finalize
--     task returns one promise per envelope, so an envelope that fails is retried alone: graphile-worker
--     puts back a job holding only the failed envelopes.
--   * 95 us waiting for the full-scan row lock: finalize_results took it before writing objects, audit
--     rows and side effects, and record_page held it while inserting a whole page (~75 ms per 1,000
--     objects), so concurrent batches ran one after the other. Both now take it last, for the counter
--     update alone; pages of one scan are serialized by an advisory lock instead.
-- Guarantees are unchanged: state, counters and the jobs they emit commit in one transaction; a page
-- is recorded once; no page is recorded for a scan that is no longer running.

create or replace function dsx_private.record_scans(p_items jsonb)
returns table (idempotency_key text, status text) language plpgsql as $$
#variable_conflict use_column
declare
  v_all text[];
  v_keys text[];
begin
  -- "= any(v_all)" keeps the planner on the idempotency_key index (see finalize_results).
  select array_agg(x->>'idempotency_key') into v_all from jsonb_array_elements(p_items) x;
  with i as (
    select distinct on (x.idempotency_key) x.*
      from jsonb_to_recordset(p_items) as x(idempotency_key text, attempts integer)
  ), u as (
    update dsx.scan_results r
       set state = 'scanned', scanned_at = now(), attempts = greatest(r.attempts, i.attempts)
      from i
     where r.idempotency_key = any(v_all) and r.idempotency_key = i.idempotency_key and r.state = 'pending'
    returning r.idempotency_key
  )
  select coalesce(array_agg(u.idempotency_key), '{}') into v_keys from u;
  -- Safe for the same reason as in finalize_results: the scan job completes after this commit, synchronously.
  perform set_config('synchronous_commit', 'off', true);
  if cardinality(v_keys) > 0 then
    -- One batch job carrying a FinalizeScanObjectJob envelope per row that went pending -> scanned
    -- (that transition admits one envelope per result row, so no job_key is needed).
    perform graphile_worker.add_jobs(array[
      row('finalize-scan-object',
          (select json_agg(i.payload)
             from (select distinct on (x.idempotency_key) x.*
                     from jsonb_to_recordset(p_items) as x(idempotency_key text, payload jsonb)) i
             join unnest(v_keys) as k(key) on k.key = i.idempotency_key),
          null, null, 25, null, dsx_private.job_priority('finalize-scan-object'), null)::graphile_worker.job_spec]);
  end if;
  return query
    select x.idempotency_key,
           case when k.key is not null then 'queued' else coalesce(r.state, 'missing') end
      from jsonb_to_recordset(p_items) as x(idempotency_key text)
      left join unnest(v_keys) as k(key) on k.key = x.idempotency_key
      left join dsx.scan_results r on r.idempotency_key = x.idempotency_key and r.idempotency_key = any(v_all);
end $$;


create or replace function dsx_private.finalize_results(p_items jsonb)
returns table (idempotency_key text, status text) language plpgsql as $$
#variable_conflict use_column
declare
  v_keys text[];
  v_scan_ids bigint[];
  v_done dsx.scan_results[];
begin
  -- Every lookup below filters on "= any(v_keys)": the planner cannot see how few rows a
  -- jsonb_to_recordset() yields and would otherwise hash-join against a full scan of scan_results,
  -- a cost that grows with the table (measured: most of the finalize time at 20,000 objects).
  select array_agg(distinct x->>'idempotency_key') into v_keys from jsonb_array_elements(p_items) x;
  -- Asynchronous commit is safe here: the worker completes this job only after this transaction
  -- returns, and that completion commits synchronously, flushing the WAL up to and past this commit.
  -- A crash before then loses both, and the job runs again (finalization is idempotent).
  perform set_config('synchronous_commit', 'off', true);
  with i as (
    select distinct on (x.idempotency_key) x.*
      from jsonb_to_recordset(p_items) as x(
        idempotency_key text, outcome text, reason text, raw_reason text, raw_result jsonb,
        normalization_version integer, attempts integer, fetch_ms integer, scan_ms integer,
        size bigint, etag text, mtime timestamptz, job_id uuid)
  ), u as (
    update dsx.scan_results r
       set state = 'finalized', outcome = i.outcome, reason = i.reason, raw_reason = i.raw_reason,
           raw_result = i.raw_result, normalization_version = i.normalization_version,
           attempts = greatest(r.attempts, coalesce(i.attempts, 0)), fetch_ms = i.fetch_ms, scan_ms = i.scan_ms,
           size = coalesce(i.size, r.size), etag = coalesce(i.etag, r.etag), mtime = coalesce(i.mtime, r.mtime),
           finalize_job_id = i.job_id, finalized_at = clock_timestamp()
      from i
     where r.idempotency_key = any(v_keys) and r.idempotency_key = i.idempotency_key and r.state <> 'finalized'
    returning r.*
  )
  select coalesce(array_agg(u::dsx.scan_results), '{}') into v_done from u;

  if cardinality(v_done) > 0 then
    -- Latest state per object: the latest finalized scan wins, whichever source it came from.
    insert into dsx.objects as o (scope_id, identity, identity_hash, size, etag, mtime, last_outcome, last_reason,
                                  last_scan_result_id, last_finalized_at)
    select distinct on (d.scope_id, d.object_identity)
           d.scope_id, d.object_identity, dsx_private.identity_hash(d.object_identity), d.size, d.etag, d.mtime,
           d.outcome, d.reason, d.id, d.finalized_at
      from unnest(v_done) d
     where d.outcome <> 'canceled'
     order by d.scope_id, d.object_identity, d.finalized_at desc, d.id desc
    on conflict (scope_id, identity_hash) do update
       set size = excluded.size, etag = excluded.etag, mtime = excluded.mtime,
           last_outcome = excluded.last_outcome, last_reason = excluded.last_reason,
           last_scan_result_id = excluded.last_scan_result_id, last_finalized_at = excluded.last_finalized_at,
           updated_at = now()
     where o.last_finalized_at is null or o.last_finalized_at <= excluded.last_finalized_at;

    insert into dsx.audit_log (actor, action, scope_id, full_scan_id, scan_result_id, object_identity, correlation_id, detail)
    select 'dsx-connect', 'object.finalized', d.scope_id, d.full_scan_id, d.id, d.object_identity, d.correlation_id,
           jsonb_build_object('outcome', d.outcome, 'reason', d.reason, 'source_type', d.source_type,
                              'attempts', d.attempts)
      from unnest(v_done) d;

    -- Policy: outcome -> remediation and notifications, recorded in the ledger, jobs enqueued.
    perform dsx_private.decide_side_effects(v_done);
  end if;

  -- Counters last: the full-scan rows are locked in id order for this update alone, so concurrent
  -- batches of one scan overlap in everything above. cancel_full_scan skips result rows locked here.
  select array_agg(distinct d.full_scan_id order by d.full_scan_id) into v_scan_ids
    from unnest(v_done) d where d.full_scan_id is not null;
  if cardinality(v_scan_ids) > 0 then
    perform 1 from dsx.full_scans f where f.id = any(v_scan_ids) order by f.id for update;
    with d as (select * from unnest(v_done) where full_scan_id is not null),
    a as (
      select d.full_scan_id, count(*) as n,
             count(*) filter (where outcome = 'clean') as clean,
             count(*) filter (where outcome = 'malicious') as malicious,
             count(*) filter (where outcome = 'unable_to_scan') as unable_to_scan,
             count(*) filter (where outcome = 'unsupported_type') as unsupported_type,
             count(*) filter (where outcome = 'fetch_failed') as fetch_failed,
             count(*) filter (where outcome = 'timeout') as timeout,
             count(*) filter (where outcome = 'policy_blocked') as policy_blocked,
             count(*) filter (where outcome = 'canceled') as canceled
        from d group by d.full_scan_id
    )
    update dsx.full_scans f
       set finalized = f.finalized + a.n,
           clean_count = f.clean_count + a.clean,
           malicious_count = f.malicious_count + a.malicious,
           unable_to_scan_count = f.unable_to_scan_count + a.unable_to_scan,
           unsupported_type_count = f.unsupported_type_count + a.unsupported_type,
           fetch_failed_count = f.fetch_failed_count + a.fetch_failed,
           timeout_count = f.timeout_count + a.timeout,
           policy_blocked_count = f.policy_blocked_count + a.policy_blocked,
           canceled_count = f.canceled_count + a.canceled,
           updated_at = now()
      from a
     where f.id = a.full_scan_id;
    perform dsx_private.complete_if_done(v_scan_ids);
  end if;

  return query
    select x.idempotency_key,
           case when d.id is not null then 'finalized' when r.id is not null then 'duplicate' else 'missing' end
      from (select distinct x.idempotency_key from jsonb_to_recordset(p_items) as x(idempotency_key text)) x
      left join unnest(v_done) d on d.idempotency_key = x.idempotency_key
      left join dsx.scan_results r on r.idempotency_key = x.idempotency_key and r.idempotency_key = any(v_keys);
end $$;


-- EnumerateScopePageJob: as in 0003, except for locking. Pages of one scan are serialized by an
-- advisory lock (a retry of a page waits for, then sees, the attempt before it); the full-scan row is
-- locked only at the end, to bump the counters and move the cursor, and the page is recorded only if
-- the scan is still running then (a cancel or failure that committed meanwhile rolls the page back).
create or replace function dsx_private.record_page(
  p_full_scan_id bigint, p_page_no integer, p_objects jsonb, p_next_cursor text, p_parent_job_id uuid,
  p_scan_max_attempts integer
) returns jsonb language plpgsql as $$
declare
  v_scan dsx.full_scans;
  v_scope dsx.scopes;
  v_new bigint;
  v_specs graphile_worker.job_spec[];
  v_status text;
begin
  perform pg_advisory_xact_lock(hashtextextended('dsx.enumerate:' || p_full_scan_id, 0));
  select * into v_scan from dsx.full_scans f where f.id = p_full_scan_id;
  if not found then
    return jsonb_build_object('status', 'missing');
  end if;
  if v_scan.status <> 'running' then
    return jsonb_build_object('status', v_scan.status);
  end if;
  if v_scan.pages > p_page_no then
    return jsonb_build_object('status', 'duplicate');
  end if;
  if v_scan.pages < p_page_no then
    perform dsx_private.raise('55000', format('full scan %s: page %s arrived before page %s was recorded', p_full_scan_id, p_page_no, v_scan.pages));
  end if;
  select * into v_scope from dsx.scopes s where s.id = v_scan.scope_id;

  begin
    with o as (
      select * from jsonb_to_recordset(p_objects) as x(identity text, size bigint, etag text, mtime timestamptz)
    ), ins as (
      insert into dsx.scan_results as r (idempotency_key, full_scan_id, scope_id, integration_id, object_identity,
                                         source_type, source_entity_id, correlation_id, root_job_id, requested_by,
                                         size, etag, mtime)
      select 'fs:' || v_scan.id || ':' || dsx_private.identity_hash(o.identity), v_scan.id, v_scope.id,
             v_scope.integration_id, o.identity, 'full_scan', v_scan.id::text, v_scan.correlation_id,
             v_scan.root_job_id, v_scan.requested_by, o.size, o.etag, o.mtime
        from o
      on conflict (idempotency_key) do nothing
      returning r.idempotency_key, r.scan_job_id, r.object_identity, r.size, r.etag, r.mtime
    )
    select count(*),
           coalesce(array_agg(row(
             'scan-object',
             dsx_private.job_envelope('scan-object', ins.scan_job_id, v_scan.correlation_id, v_scan.root_job_id,
                                      p_parent_job_id, ins.idempotency_key, 'full_scan', v_scan.id::text,
                                      v_scope.integration_id, v_scope.id, ins.object_identity, v_scan.requested_by,
                                      jsonb_build_object('size', ins.size, 'etag', ins.etag, 'mtime', ins.mtime)),
             -- No job_key: the unique idempotency_key of dsx.scan_results already makes this job once per
             -- object and scan, and keyed inserts cost graphile-worker an extra upsert per job.
             null, null, p_scan_max_attempts, null,
             dsx_private.job_priority('scan-object', 'full_scan'), null)::graphile_worker.job_spec), '{}')
      into v_new, v_specs
      from ins;
    if v_new > 0 then
      perform graphile_worker.add_jobs(v_specs);
    end if;

    update dsx.full_scans f
       set discovered = f.discovered + v_new, pages = f.pages + 1, cursor = p_next_cursor,
           enumeration_exhausted = (p_next_cursor is null), updated_at = now()
     where f.id = p_full_scan_id and f.status = 'running'
    returning * into v_scan;
    if not found then
      -- Canceled or failed while this page was being written: undo the page (this block's subtransaction).
      raise exception using errcode = 'DXNRN', message = 'full scan no longer running';
    end if;
  exception when sqlstate 'DXNRN' then
    select f.status into v_status from dsx.full_scans f where f.id = p_full_scan_id;
    return jsonb_build_object('status', v_status);
  end;

  if p_next_cursor is not null then
    perform graphile_worker.add_job(
      'enumerate-scope-page',
      dsx_private.job_envelope('enumerate-scope-page', gen_random_uuid(), v_scan.correlation_id, v_scan.root_job_id,
                               p_parent_job_id, 'enum:' || v_scan.id || ':' || (p_page_no + 1), 'full_scan',
                               v_scan.id::text, v_scope.integration_id, v_scope.id, null, v_scan.requested_by,
                               jsonb_build_object('full_scan_id', v_scan.id, 'page_no', p_page_no + 1, 'cursor', p_next_cursor)),
      job_key := 'enum:' || v_scan.id || ':' || (p_page_no + 1),
      max_attempts := 10,
      priority := dsx_private.job_priority('enumerate-scope-page'));
  else
    perform dsx_private.audit('dsx-connect', 'full_scan.enumeration_exhausted', v_scope.id, v_scan.id, v_scan.correlation_id,
                              jsonb_build_object('pages', p_page_no + 1, 'discovered', v_scan.discovered));
    perform dsx_private.complete_if_done(array[p_full_scan_id]);
  end if;
  return jsonb_build_object('status', 'recorded', 'new', v_new);
end $$;


-- The invariant checker sees the envelopes inside batch jobs: its "no scan job left" check now looks
-- at every envelope of every queued job. The other checks are 0006's, unchanged (kept under a
-- private name and called from here).
alter function dsx.verify_full_scan(bigint) rename to verify_full_scan_checks;
alter function dsx.verify_full_scan_checks(bigint) set schema dsx_private;

create function dsx.verify_full_scan(p_full_scan_id bigint)
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
       and e->>'job_type' in ('full-scan-scope', 'enumerate-scope-page', 'scan-object', 'finalize-scan-object')
    having exists (select 1 from dsx.full_scans f where f.id = p_full_scan_id and f.finished_at is not null)
  ) c order by c.n
$$;
revoke execute on function dsx.verify_full_scan(bigint) from public;
grant execute on function dsx.verify_full_scan(bigint) to dsx_viewer;
