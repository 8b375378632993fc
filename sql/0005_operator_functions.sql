-- Operator entry points shared by the CLI, psql and (later) GraphQL, the side-effect ledger's
-- transitions, and views for psql.

create function dsx.create_integration(p_name text, p_kind text, p_settings jsonb default '{}', p_credentials jsonb default null)
returns dsx.integrations language plpgsql as $$
declare
  v dsx.integrations;
begin
  insert into dsx.integrations (name, kind, settings) values (p_name, p_kind, coalesce(p_settings, '{}')) returning * into v;
  if p_credentials is not null then
    insert into dsx_private.integration_credentials (integration_id, credentials) values (v.id, p_credentials);
  end if;
  perform dsx_private.audit(session_user, 'integration.created', null, null, null,
                            jsonb_build_object('integration_id', v.id, 'name', v.name, 'kind', v.kind));
  return v;
end $$;

-- Credentials can be written (and replaced), never read back through the dsx schema.
create function dsx.set_integration_credentials(p_integration_id bigint, p_credentials jsonb)
returns boolean language plpgsql as $$
begin
  if not exists (select 1 from dsx.integrations where id = p_integration_id) then
    perform dsx_private.raise('P0002', format('unknown integration id %s', p_integration_id));
  end if;
  insert into dsx_private.integration_credentials (integration_id, credentials) values (p_integration_id, p_credentials)
  on conflict (integration_id) do update set credentials = excluded.credentials, updated_at = now();
  perform dsx_private.audit(session_user, 'integration.credentials_set', null, null, null,
                            jsonb_build_object('integration_id', p_integration_id));
  return true;
end $$;

create function dsx.create_scope(
  p_integration_id bigint, p_name text, p_root text, p_include_globs text[] default '{}',
  p_exclude_globs text[] default '{}', p_policy jsonb default '{}', p_monitor boolean default false
) returns dsx.scopes language plpgsql as $$
declare
  v dsx.scopes;
begin
  if not exists (select 1 from dsx.integrations where id = p_integration_id) then
    perform dsx_private.raise('P0002', format('unknown integration id %s', p_integration_id));
  end if;
  insert into dsx.scopes (integration_id, name, root, include_globs, exclude_globs, policy, monitor)
  values (p_integration_id, p_name, coalesce(p_root, ''), coalesce(p_include_globs, '{}'),
          coalesce(p_exclude_globs, '{}'), coalesce(p_policy, '{}'), coalesce(p_monitor, false))
  returning * into v;
  perform dsx_private.audit(session_user, 'scope.created', v.id, null, null,
                            jsonb_build_object('name', v.name, 'root', v.root, 'integration_id', v.integration_id));
  return v;
end $$;

create function dsx.set_scope_policy(p_scope_id bigint, p_policy jsonb) returns dsx.scopes language plpgsql as $$
declare
  v dsx.scopes;
begin
  if dsx_private.policy_error(p_policy) is not null then
    perform dsx_private.raise('22023', dsx_private.policy_error(p_policy));
  end if;
  update dsx.scopes s set policy = p_policy where s.id = p_scope_id returning * into v;
  if not found then
    perform dsx_private.raise('P0002', format('unknown scope id %s', p_scope_id));
  end if;
  perform dsx_private.audit(session_user, 'scope.policy_set', v.id, null, null, jsonb_build_object('policy', p_policy));
  return v;
end $$;

create function dsx.create_notification_channel(p_name text, p_url text, p_secret text)
returns dsx.notification_channels language plpgsql as $$
declare
  v dsx.notification_channels;
begin
  if p_secret is null or length(p_secret) < 8 then
    perform dsx_private.raise('22023', 'a webhook secret of at least 8 characters is required (it signs every delivery)');
  end if;
  insert into dsx.notification_channels (name, url) values (p_name, p_url) returning * into v;
  insert into dsx_private.notification_channel_secrets (channel_id, secret) values (v.id, p_secret);
  perform dsx_private.audit(session_user, 'notification_channel.created', null, null, null,
                            jsonb_build_object('channel_id', v.id, 'name', v.name, 'url', v.url));
  return v;
end $$;

-- Records the execution of a pending side effect, once. Returns false when it was already recorded.
create function dsx_private.finish_side_effect(p_id bigint, p_status text, p_detail text)
returns boolean language plpgsql as $$
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

-- Live progress for psql: counts, rate and ETA per full scan.
create view dsx.full_scan_progress as
select f.id, f.scope_id, s.name as scope_name, f.status, f.discovered, f.finalized, f.pages,
       f.enumeration_exhausted,
       case when f.discovered > 0 then round(100.0 * f.finalized / f.discovered, 1) end as percent_finalized,
       round(extract(epoch from coalesce(f.finished_at, now()) - f.started_at)::numeric, 1) as elapsed_s,
       case when f.started_at is not null and coalesce(f.finished_at, now()) > f.started_at
            then round(f.finalized / extract(epoch from coalesce(f.finished_at, now()) - f.started_at)::numeric, 1) end
         as objects_per_s,
       case when f.status = 'running' and f.finalized > 0 and f.discovered > f.finalized
            then round((f.discovered - f.finalized)
                       * extract(epoch from now() - f.started_at)::numeric / f.finalized, 0) end as eta_s,
       jsonb_build_object('clean', f.clean_count, 'malicious', f.malicious_count,
                          'unable_to_scan', f.unable_to_scan_count, 'unsupported_type', f.unsupported_type_count,
                          'fetch_failed', f.fetch_failed_count, 'timeout', f.timeout_count,
                          'policy_blocked', f.policy_blocked_count, 'canceled', f.canceled_count) as outcomes,
       f.cancel_mode, f.error, f.requested_by, f.created_at, f.started_at, f.finished_at
  from dsx.full_scans f
  join dsx.scopes s on s.id = f.scope_id;
comment on view dsx.full_scan_progress is 'One row per full scan with progress (finalized/discovered), rate and ETA.';
