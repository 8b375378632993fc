-- Repeatable: the one current definition of each function below, with its attributes, grants and
-- smart tags. Applied by `dsx-connect migrate` whenever a file in sql/functions changes (rules in
-- sql/README.md).
--
-- The side-effect ledger's transitions (the decisions themselves are made in 40_scan_results.sql).

-- Records the execution of a pending side effect, once. Returns false when it was already recorded.
create or replace function dsx_private.finish_side_effect(p_id bigint, p_status text, p_detail text)
returns boolean language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
  v dsx.side_effects;
  r dsx.scan_results;
begin
  update dsx.side_effects e
     set status = p_status, detail = p_detail, attempts = e.attempts + 1, executed_at = now()
   where e.id = p_id and e.status = 'pending'
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
