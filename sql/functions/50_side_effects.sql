-- Repeatable: the one current definition of each function below, with its attributes, grants and
-- smart tags. Applied by `dsx-connect migrate` whenever a file in sql/functions changes (rules in
-- sql/README.md).
--
-- The side-effect ledger's transitions (the decisions themselves are made in 40_scan_results.sql).

-- Claims a side effect for the job p_job_id (a graphile-worker job id) and returns it with what is
-- needed to execute it, in its own short transaction: nothing is held while the action runs.
-- claim: 'claimed' (execute it now), 'held' (another job that still exists holds it: leave it to that
-- job), 'finished' (executed before: status tells how), 'missing'. A claim of a job that no longer
-- exists (deleted by an operator, say) is taken over.
create or replace function dsx_private.claim_side_effect(p_id bigint, p_job_id bigint)
returns table (claim text, id bigint, kind text, action text, status text, idempotency_key text, outcome text,
               reason text, scan_result_id bigint, object_identity text, etag text, version_id text, integration_id bigint,
               scope_id bigint, full_scan_id bigint, source_type text, correlation_id uuid, finalized_at timestamptz,
               channel_url text, channel_secret text)
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
  v dsx.side_effects;
begin
  select * into v from dsx.side_effects e where e.id = p_id for update;
  if not found then
    claim := 'missing';
    return next;
    return;
  end if;
  if v.status not in ('pending', 'executing') then
    claim := 'finished';
    status := v.status;
    return next;
    return;
  end if;
  if v.status = 'executing' and v.claimed_by_job is distinct from p_job_id
     and exists (select 1 from graphile_worker._private_jobs j where j.id = v.claimed_by_job) then
    claim := 'held';
    status := v.status;
    return next;
    return;
  end if;
  update dsx.side_effects e
     set status = 'executing', claimed_by_job = p_job_id, claimed_at = now(), attempts = e.attempts + 1
   where e.id = p_id;
  return query
    select 'claimed', e.id, e.kind, e.action, 'executing'::text, e.idempotency_key, e.outcome, r.reason, r.id,
           r.object_identity, r.etag, r.version_id, r.integration_id, r.scope_id, r.full_scan_id, r.source_type, r.correlation_id,
           r.finalized_at, c.url, cs.secret
      from dsx.side_effects e
      join dsx.scan_results r on r.id = e.scan_result_id
      left join dsx.notification_channels c on c.id = e.channel_id
      left join dsx_private.notification_channel_secrets cs on cs.channel_id = e.channel_id
     where e.id = p_id;
end $$;

-- Records the execution of a claimed side effect, once: only the job holding the claim (or, for an
-- effect never claimed, anyone) may record it. Returns false when it was already recorded.
create or replace function dsx_private.finish_side_effect(p_id bigint, p_job_id bigint, p_status text, p_detail text)
returns boolean language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
  v dsx.side_effects;
  r dsx.scan_results;
begin
  update dsx.side_effects e
     set status = p_status, detail = p_detail, executed_at = now(),
         attempts = case when e.status = 'pending' then e.attempts + 1 else e.attempts end
   where e.id = p_id
     and (e.status = 'pending' or (e.status = 'executing' and e.claimed_by_job is not distinct from p_job_id))
  returning * into v;
  if not found then
    return false;
  end if;
  select * into r from dsx.scan_results where id = v.scan_result_id;
  insert into dsx.audit_log (actor, action, scope_id, full_scan_id, scan_result_id, object_identity, correlation_id, detail)
  values ('dsx-connect', v.kind || '.' || p_status, r.scope_id, r.full_scan_id, r.id, r.object_identity, r.correlation_id,
          jsonb_build_object('action', v.action, 'side_effect_id', v.id, 'channel_id', v.channel_id, 'detail', p_detail));
  return true;
end $$;
