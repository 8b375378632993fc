-- Two corrections found by the bad-input and fault tests.
--
-- 1. A failed scan was marked finished (finished_at) the moment its enumeration failed, while the
--    objects it had already queued were still being scanned and finalized: `scan status --wait` and
--    the progress subscription ended early, and the invariant checker could see unfinalized objects
--    of a "finished" scan. A failed scan now finishes like a drained cancel: when its last queued
--    object is finalized (at once if none is in flight).
-- 2. Credentials that are not a JSON object broke the table's check constraint, whose error detail
--    ("Failing row contains ...") carries the credentials into the server log. They are refused
--    before the insert, with a message that shows nothing of them.

create or replace function dsx_private.complete_if_done(p_ids bigint[]) returns void language plpgsql as $$
declare
  r record;
begin
  for r in
    update dsx.full_scans f
       set status = 'completed', finished_at = now(), updated_at = now()
     where f.id = any(p_ids) and f.status = 'running' and f.enumeration_exhausted and f.finalized = f.discovered
    returning f.id, f.scope_id, f.correlation_id, f.discovered
  loop
    perform dsx_private.audit('dsx-connect', 'full_scan.completed', r.scope_id, r.id, r.correlation_id,
                              jsonb_build_object('discovered', r.discovered));
    perform dsx_private.notify_full_scan(r.id, 'completed');
  end loop;
  -- A canceled or failed scan finishes once the objects it had already queued are finalized.
  for r in
    update dsx.full_scans f
       set finished_at = now(), updated_at = now()
     where f.id = any(p_ids) and f.status in ('canceled', 'failed') and f.finished_at is null
       and f.finalized = f.discovered
    returning f.id, f.scope_id, f.correlation_id, f.finalized, f.status
  loop
    perform dsx_private.audit('dsx-connect', 'full_scan.drained', r.scope_id, r.id, r.correlation_id,
                              jsonb_build_object('finalized', r.finalized));
    perform dsx_private.notify_full_scan(r.id, r.status);
  end loop;
end $$;


create or replace function dsx_private.fail_full_scan(p_full_scan_id bigint, p_error text) returns void language plpgsql as $$
declare
  v_scan dsx.full_scans;
begin
  update dsx.full_scans f
     set status = 'failed', error = p_error, updated_at = now(),
         finished_at = case when f.finalized = f.discovered then now() end
   where f.id = p_full_scan_id and f.status in ('queued', 'running')
  returning * into v_scan;
  if found then
    perform dsx_private.audit('dsx-connect', 'full_scan.failed', v_scan.scope_id, v_scan.id, v_scan.correlation_id,
                              jsonb_build_object('error', p_error));
    perform dsx_private.notify_full_scan(v_scan.id, 'failed');
  end if;
end $$;

create function dsx_private.check_credentials(p_credentials jsonb) returns void language plpgsql immutable as $$
begin
  if p_credentials is not null and jsonb_typeof(p_credentials) <> 'object' then
    perform dsx_private.raise('22023', format('credentials must be a JSON object (got a JSON %s)', jsonb_typeof(p_credentials)));
  end if;
end $$;

create or replace function dsx.create_integration(p_name text, p_kind text, p_settings jsonb default '{}', p_credentials jsonb default null)
returns dsx.integrations language plpgsql security definer as $$
declare
  v dsx.integrations;
begin
  perform dsx_private.check_credentials(p_credentials);
  insert into dsx.integrations (name, kind, settings) values (p_name, p_kind, coalesce(p_settings, '{}')) returning * into v;
  if p_credentials is not null then
    insert into dsx_private.integration_credentials (integration_id, credentials) values (v.id, p_credentials);
  end if;
  perform dsx_private.audit(session_user, 'integration.created', null, null, null,
                            jsonb_build_object('integration_id', v.id, 'name', v.name, 'kind', v.kind));
  return v;
end $$;

create or replace function dsx.set_integration_credentials(p_integration_id bigint, p_credentials jsonb)
returns boolean language plpgsql security definer as $$
begin
  if p_credentials is null then
    perform dsx_private.raise('22023', 'credentials must be a JSON object (got null)');
  end if;
  perform dsx_private.check_credentials(p_credentials);
  if not exists (select 1 from dsx.integrations where id = p_integration_id) then
    perform dsx_private.raise('P0002', format('unknown integration id %s', p_integration_id));
  end if;
  insert into dsx_private.integration_credentials (integration_id, credentials) values (p_integration_id, p_credentials)
  on conflict (integration_id) do update set credentials = excluded.credentials, updated_at = now();
  perform dsx_private.audit(session_user, 'integration.credentials_set', null, null, null,
                            jsonb_build_object('integration_id', p_integration_id));
  return true;
end $$;
