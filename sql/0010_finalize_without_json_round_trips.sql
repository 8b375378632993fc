-- Finalization without JSON round trips. The batch's finalized rows were carried as jsonb and parsed
-- back five times (counters, objects, audit, policy, the answer); they are now an array of
-- dsx.scan_results, which PostgreSQL unnests without parsing. Same statements, same guarantees.
-- Measured on the finalize function alone (2 cores, batches of 500, back to back, bench harness):
-- ~10% less time per object for finalize_results, and decide_side_effects no longer re-reads the
-- DSXA response of every object to find that a clean object needs no side effect.

drop function dsx_private.decide_side_effects(jsonb);

create function dsx_private.decide_side_effects(p_done dsx.scan_results[]) returns void language plpgsql as $$
declare
  v_specs graphile_worker.job_spec[];
begin
  with d as (
    select d.*, coalesce(s.policy -> d.outcome, dsx_private.default_policy() -> d.outcome, '{}'::jsonb) as rule
      from unnest(p_done) d
      join dsx.scopes s on s.id = d.scope_id
     where d.outcome <> 'canceled'
  ), wants_notify as (
    select d.* from d
     where d.rule -> 'notify' = 'true'::jsonb
        or (jsonb_typeof(d.rule -> 'notify') = 'array' and jsonb_array_length(d.rule -> 'notify') > 0)
  ), channels as (
    select w.id as result_id, c.id as channel_id
      from wants_notify w
      join dsx.notification_channels c
        on c.enabled and (w.rule -> 'notify' = 'true'::jsonb or w.rule -> 'notify' ? c.name)
  ), decisions as (
    select 'rem:' || d.idempotency_key as key, 'remediation' as kind, d.rule ->> 'remediation' as action,
           d.id as result_id, null::bigint as channel_id, d.outcome, 'pending' as status, null as detail
      from d where coalesce(d.rule ->> 'remediation', 'none') <> 'none'
    union all
    select 'notify:' || w.idempotency_key || ':' || c.channel_id, 'notification', 'webhook', w.id, c.channel_id,
           w.outcome, 'pending', null
      from wants_notify w join channels c on c.result_id = w.id
    union all
    select 'notify:' || w.idempotency_key || ':none', 'notification', 'webhook', w.id, null, w.outcome, 'skipped',
           'no enabled notification channel matches the policy'
      from wants_notify w where not exists (select 1 from channels c where c.result_id = w.id)
  ), ins as (
    insert into dsx.side_effects as e (idempotency_key, kind, action, scan_result_id, channel_id, outcome, status, detail)
    select key, kind, action, result_id, channel_id, outcome, status, detail from decisions
    on conflict (idempotency_key) do nothing
    returning e.*
  )
  select coalesce(array_agg(row(
           case when ins.kind = 'remediation' then 'apply-remediation' else 'send-notification' end,
           dsx_private.job_envelope(
             case when ins.kind = 'remediation' then 'apply-remediation' else 'send-notification' end,
             gen_random_uuid(), d.correlation_id, d.root_job_id, d.finalize_job_id, ins.idempotency_key,
             d.source_type, d.source_entity_id, d.integration_id, d.scope_id, d.object_identity, d.requested_by,
             jsonb_build_object('side_effect_id', ins.id, 'action', ins.action, 'outcome', ins.outcome,
                                'reason', d.reason, 'scan_result_id', d.id, 'channel_id', ins.channel_id)),
           null, null, 10, 'effect:' || ins.idempotency_key,
           dsx_private.job_priority(case when ins.kind = 'remediation' then 'apply-remediation' else 'send-notification' end),
           null)::graphile_worker.job_spec) filter (where ins.status = 'pending'), '{}')
    into v_specs
    from ins join d on d.id = ins.scan_result_id;
  if cardinality(v_specs) > 0 then
    perform graphile_worker.add_jobs(v_specs);
  end if;
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

  -- The full-scan rows are locked last, in id order, and so only briefly: concurrent batches of one
  -- scan serialize on the counter update alone. cancel_full_scan skips result rows locked here.
  select array_agg(distinct d.full_scan_id order by d.full_scan_id) into v_scan_ids
    from unnest(v_done) d where d.full_scan_id is not null;
  perform 1 from dsx.full_scans f where f.id = any(v_scan_ids) order by f.id for update;

  if cardinality(v_done) > 0 then
    -- Counters: one row per full scan per batch.
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

  perform dsx_private.complete_if_done(v_scan_ids);

  return query
    select x.idempotency_key,
           case when d.id is not null then 'finalized' when r.id is not null then 'duplicate' else 'missing' end
      from (select distinct x.idempotency_key from jsonb_to_recordset(p_items) as x(idempotency_key text)) x
      left join unnest(v_done) d on d.idempotency_key = x.idempotency_key
      left join dsx.scan_results r on r.idempotency_key = x.idempotency_key and r.idempotency_key = any(v_keys);
end $$;

