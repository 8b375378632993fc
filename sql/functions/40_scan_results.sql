-- Repeatable: the one current definition of each function below, with its attributes, grants and
-- smart tags. Applied by `dsx-connect migrate` whenever a file in sql/functions changes (rules in
-- sql/README.md).
--
-- Scan results: the scan preflight, the "scanned" mark with its finalize jobs, finalization (the
-- decision engine) and its policy decisions, and the NOTIFYs of finalized results. All batched: many
-- concurrent jobs of one worker share one call (src/pipeline/batcher.ts).

-- Scan preflight: the state of each result row. A scan job scans only a 'pending' row.
create or replace function dsx_private.scan_result_states(p_keys text[])
returns table (idempotency_key text, state text) language sql stable set search_path = pg_catalog, pg_temp as $$
  select r.idempotency_key, r.state from dsx.scan_results r where r.idempotency_key = any(p_keys)
$$;

-- ScanObjectJob done: marks each pending row 'scanned' and enqueues the FinalizeScanObjectJobs, in one
-- transaction for a whole batch of scan jobs. A row already scanned or finalized gets no second job.
-- The batch's finalize envelopes travel as ONE graphile-worker "batch job" per lane (a payload that is
-- an array of per-object envelopes, each the one a single job would carry): one finalize job row per
-- object doubled the queue's work (measured per object: 83 us inserting job rows, 163 us fetching
-- them). The lane is the envelope's job_type, the finalize task its scan job chose
-- ('finalize-scan-object' or the monitor lane's 'monitor-finalize-scan-object'); a batcher of one
-- lane sends one lane's items, but the grouping holds whoever calls. The finalize task returns one
-- promise per envelope, so an envelope that fails is retried alone.
-- p_items: [{"idempotency_key": text, "attempts": int, "payload": {...finalize job envelope...}}]
create or replace function dsx_private.record_scans(p_items jsonb)
returns table (idempotency_key text, status text) language plpgsql set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_all text[];
  v_keys text[];
  v_bad text;
begin
  -- A finalize task nobody runs would strand its objects as 'scanned': refused before anything changes.
  select x->'payload'->>'job_type' into v_bad from jsonb_array_elements(p_items) x
   where (x->'payload'->>'job_type') is distinct from 'finalize-scan-object'
     and (x->'payload'->>'job_type') is distinct from 'monitor-finalize-scan-object'
   limit 1;
  if found then
    perform dsx_private.raise('22023', format('record_scans: finalize payload job_type %s is not a finalize task (finalize-scan-object, monitor-finalize-scan-object)', coalesce(quote_literal(v_bad), 'null')));
  end if;
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
    -- One batch job per lane carrying a FinalizeScanObjectJob envelope per row that went pending ->
    -- scanned (that transition admits one envelope per result row, so no job_key is needed).
    perform graphile_worker.add_jobs(array(
      select row(g.task, g.payloads, null, null, 25, null, dsx_private.job_priority(g.task), null)::graphile_worker.job_spec
        from (select i.payload->>'job_type' as task, json_agg(i.payload) as payloads
                from (select distinct on (x.idempotency_key) x.*
                        from jsonb_to_recordset(p_items) as x(idempotency_key text, payload jsonb)) i
                join unnest(v_keys) as k(key) on k.key = i.idempotency_key
               group by i.payload->>'job_type') g
       order by g.task));
  end if;
  return query
    select x.idempotency_key,
           case when k.key is not null then 'queued' else coalesce(r.state, 'missing') end
      from jsonb_to_recordset(p_items) as x(idempotency_key text)
      left join unnest(v_keys) as k(key) on k.key = x.idempotency_key
      left join dsx.scan_results r on r.idempotency_key = x.idempotency_key and r.idempotency_key = any(v_all);
end $$;

-- FinalizeScanObjectJob, for a batch of results at once: persists each result, updates the object's
-- latest state and the full-scan counters (one UPDATE per full scan per batch, not per object: a counter
-- row updated by every object caps the pipeline near 940 commits/s on 2 cores), writes the audit trail,
-- evaluates the scope's policy into side-effect ledger rows and enqueues their jobs, and completes scans
-- that are done. A result already finalized is left unchanged ('duplicate'), so redelivery never counts
-- twice nor repeats a side effect. The batch's rows travel as dsx.scan_results[] (not jsonb parsed five
-- times: ~30% less database time per object), and the full-scan rows are locked last, for the counter
-- update alone (waiting for that lock cost 95 us per object when it was taken first).
-- p_items: [{"idempotency_key", "outcome", "reason", "raw_reason", "raw_result", "normalization_version",
--            "attempts", "fetch_ms", "scan_ms", "size", "etag", "mtime", "version_id", "job_id"}]
-- Returns one row per distinct input key: status 'finalized' | 'duplicate' | 'missing'.
create or replace function dsx_private.finalize_results(p_items jsonb)
returns table (idempotency_key text, status text) language plpgsql set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_keys text[];
  v_scan_ids bigint[];
  v_done dsx.scan_results[];
  v_resumed dsx.full_scans;
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
        size bigint, etag text, mtime timestamptz, version_id text, job_id uuid)
  ), u as (
    update dsx.scan_results r
       set state = 'finalized', outcome = i.outcome, reason = i.reason, raw_reason = i.raw_reason,
           raw_result = i.raw_result, normalization_version = i.normalization_version,
           attempts = greatest(r.attempts, coalesce(i.attempts, 0)), fetch_ms = i.fetch_ms, scan_ms = i.scan_ms,
           size = coalesce(i.size, r.size), etag = coalesce(i.etag, r.etag), mtime = coalesce(i.mtime, r.mtime),
           version_id = coalesce(i.version_id, r.version_id),
           finalize_job_id = i.job_id, finalized_at = clock_timestamp()
      from i
     where r.idempotency_key = any(v_keys) and r.idempotency_key = i.idempotency_key and r.state <> 'finalized'
    returning r.*
  )
  select coalesce(array_agg(u::dsx.scan_results), '{}') into v_done from u;

  if cardinality(v_done) > 0 then
    -- Latest state per object: the latest finalized scan wins, whichever source it came from.
    insert into dsx.objects as o (scope_id, identity, identity_hash, size, etag, mtime, version_id, last_outcome, last_reason,
                                  last_scan_result_id, last_finalized_at)
    select distinct on (d.scope_id, d.object_identity)
           d.scope_id, d.object_identity, dsx_private.identity_hash(d.object_identity), d.size, d.etag, d.mtime, d.version_id,
           d.outcome, d.reason, d.id, d.finalized_at
      from unnest(v_done) d
     where d.outcome <> 'canceled'
     order by d.scope_id, d.object_identity, d.finalized_at desc, d.id desc
    on conflict (scope_id, identity_hash) do update
       set size = excluded.size, etag = excluded.etag, mtime = excluded.mtime, version_id = excluded.version_id,
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
    -- Admission window: a scan that paused its enumeration resumes once its outstanding objects leave
    -- room for a page. Decided under the row locks taken above, the same lock record_page pauses under,
    -- so no pause is missed and no page is queued twice.
    for v_resumed in
      update dsx.full_scans f set enumeration_paused_at = null, updated_at = now()
       where f.id = any(v_scan_ids) and f.status = 'running' and f.enumeration_paused_at is not null
         and f.discovered - f.finalized + coalesce(f.page_size, 0) <= f.scan_window
      returning f.*
    loop
      perform dsx_private.enqueue_enumeration_page(v_resumed, null);
    end loop;
    perform dsx_private.complete_if_done(v_scan_ids);
  end if;

  return query
    select x.idempotency_key,
           case when d.id is not null then 'finalized' when r.id is not null then 'duplicate' else 'missing' end
      from (select distinct x.idempotency_key from jsonb_to_recordset(p_items) as x(idempotency_key text)) x
      left join unnest(v_done) d on d.idempotency_key = x.idempotency_key
      left join dsx.scan_results r on r.idempotency_key = x.idempotency_key and r.idempotency_key = any(v_keys);
end $$;

-- Evaluates each finalized result against its scope's policy (defaults from dsx_private.default_policy())
-- and writes one ledger row per decision: a remediation when it is not 'none'; a verdict tag when the
-- rule says "tag": true and the object stays where it is (no move or delete; "remediation": "tag" is
-- the same decision); a notification per matching enabled channel, or one 'skipped' notification row
-- when no channel matches. Ledger keys are deterministic, so a decision is recorded (and its job
-- enqueued) once.
create or replace function dsx_private.decide_side_effects(p_done dsx.scan_results[]) returns void language plpgsql set search_path = pg_catalog, pg_temp as $$
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
    select 'tag:' || d.idempotency_key, 'remediation', 'tag', d.id, null::bigint, d.outcome, 'pending', null
      from d where d.rule -> 'tag' = 'true'::jsonb and coalesce(d.rule ->> 'remediation', 'none') = 'none'
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

-- Finalized results for the scanResults subscription: per scope, 'dsx_scan_results:<scope id>' with
-- {"r": [[scan result id, outcome], ...]} per finalizing statement, in chunks well under 8000 bytes.
create or replace function dsx_private.tg_scan_results_notify() returns trigger language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
  r record;
begin
  for r in
    select c.scope_id, json_agg(c.item order by c.id) as items
      from (select n.scope_id, n.id, json_build_array(n.id, n.outcome) as item,
                   (row_number() over (partition by n.scope_id order by n.id) - 1) / 150 as chunk
              from new_rows n join old_rows o on o.id = n.id
             where n.state = 'finalized' and o.state <> 'finalized') c
     group by c.scope_id, c.chunk
  loop
    perform pg_notify('dsx_scan_results:' || r.scope_id, json_build_object('r', r.items)::text);
  end loop;
  return null;
end $$;
create or replace trigger scan_results_notify after update on dsx.scan_results
  referencing new table as new_rows old table as old_rows
  for each statement execute function dsx_private.tg_scan_results_notify();

-- A scan job that found the scanner unavailable puts itself back in the queue, to run at p_run_at (just
-- after the next probe of the scanner), and completes: the new job starts with all its attempts, so an
-- outage never uses up an object's attempts, however long it lasts. Its row stays 'pending' (a copy that
-- also ran would find it 'scanned' and skip). It goes back under the task it had (its job_type), so a
-- monitoring scan stays in the monitor lane and one queued under the old name keeps it.
create or replace function dsx_private.defer_scan_job(p_payload json, p_run_at timestamptz, p_max_attempts integer)
returns void language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
  v_task text := p_payload->>'job_type';
begin
  if v_task is null or v_task not in ('scan-object', 'monitor-scan-object') then
    perform dsx_private.raise('22023', format('defer_scan_job: job_type %s is not a scan task (scan-object, monitor-scan-object)', coalesce(quote_literal(v_task), 'null')));
  end if;
  perform graphile_worker.add_job(v_task, p_payload, run_at := p_run_at, max_attempts := p_max_attempts,
                                  priority := dsx_private.job_priority(v_task, p_payload->>'source_type'));
end $$;
