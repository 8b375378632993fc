-- Repeatable: the one current definition of each function below, with its attributes, grants and
-- smart tags. Applied by `dsx-connect migrate` whenever a file in sql/functions changes (rules in
-- sql/README.md).
--
-- The catalog: integrations, scopes (the no-overlap rule), notification channels, the append-only audit
-- log, and the operator entry points shared by the CLI, psql and GraphQL. The operator functions (and
-- the catalog triggers) reach into dsx_private, which the API roles cannot touch directly: they run with
-- their owner's rights (security definer).

-- Validates an integration's settings per kind (never secrets: those live in dsx_private).
create or replace function dsx_private.tg_integrations_validate() returns trigger language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
  if new.kind = 'filesystem' then
    if coalesce(new.settings->>'root', '') !~ '^/' then
      perform dsx_private.raise('22023', format('filesystem integration %s needs settings.root, an absolute directory path', new.name));
    end if;
    if new.settings ? 'quarantine_dir' and coalesce(new.settings->>'quarantine_dir', '') !~ '^/' then
      perform dsx_private.raise('22023', format('filesystem integration %s: settings.quarantine_dir must be an absolute path', new.name));
    end if;
  elsif new.kind = 'synthetic' then
    if jsonb_typeof(new.settings->'objects') is distinct from 'number' or (new.settings->>'objects')::numeric < 0 then
      perform dsx_private.raise('22023', format('synthetic integration %s needs settings.objects, a non-negative number of objects', new.name));
    end if;
  end if;
  new.updated_at := now();
  return new;
end $$;
create or replace trigger integrations_validate before insert or update on dsx.integrations
  for each row execute function dsx_private.tg_integrations_validate();

-- The no-overlap rule. An advisory lock per integration serializes concurrent inserts/updates, so
-- two transactions can never both pass the check (each statement in this trigger takes a fresh
-- snapshot under READ COMMITTED, after the lock is granted, and so sees the other's commit).
create or replace function dsx_private.tg_scopes_no_overlap() returns trigger language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  clash record;
begin
  new.root := dsx_private.normalize_root(new.root);
  new.updated_at := now();
  if dsx_private.policy_error(new.policy) is not null then
    perform dsx_private.raise('22023', format('scope %s: %s', new.name, dsx_private.policy_error(new.policy)));
  end if;
  if tg_op = 'UPDATE' and new.root = old.root and new.integration_id = old.integration_id then
    return new;
  end if;
  perform pg_advisory_xact_lock(hashtextextended('dsx.scopes.integration:' || new.integration_id, 0));
  select s.id, s.name, s.root into clash
    from dsx.scopes s
   where s.integration_id = new.integration_id
     and s.id is distinct from new.id
     and (s.root = new.root or s.root = '' or new.root = ''
          or starts_with(new.root, s.root || '/') or starts_with(s.root, new.root || '/'))
   order by s.id
   limit 1;
  if found then
    raise exception using
      errcode = '23P01',
      message = format('scope root %L overlaps scope %s (id %s, root %L) in the same integration',
                       new.root, clash.name, clash.id, clash.root),
      detail = format('conflicting_scope_id=%s', clash.id),
      hint = 'Within one integration, scope roots may not be identical or contain one another; every object must belong to at most one scope.';
  end if;
  return new;
end $$;
create or replace trigger scopes_no_overlap before insert or update on dsx.scopes
  for each row execute function dsx_private.tg_scopes_no_overlap();

create or replace function dsx_private.tg_audit_log_append_only() returns trigger language plpgsql set search_path = pg_catalog, pg_temp as $$
begin
  raise exception using errcode = '42501', message = 'dsx.audit_log is append-only: rows cannot be updated or deleted';
end $$;
create or replace trigger audit_log_append_only before update or delete on dsx.audit_log
  for each row execute function dsx_private.tg_audit_log_append_only();
create or replace trigger audit_log_no_truncate before truncate on dsx.audit_log
  for each statement execute function dsx_private.tg_audit_log_append_only();

-- Creates an integration; credentials (optional) are stored write-only in dsx_private.
create or replace function dsx.create_integration(p_name text, p_kind text, p_settings jsonb default '{}', p_credentials jsonb default null)
returns dsx.integrations language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
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
comment on function dsx.create_integration(text, text, jsonb, jsonb) is E'@resultFieldName integration\nCreates an integration; credentials (optional) are stored write-only in dsx_private.';
revoke execute on function dsx.create_integration(text, text, jsonb, jsonb) from public;
grant execute on function dsx.create_integration(text, text, jsonb, jsonb) to dsx_operator;

-- Credentials can be written (and replaced), never read back through the dsx schema.
create or replace function dsx.set_integration_credentials(p_integration_id bigint, p_credentials jsonb)
returns boolean language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
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
comment on function dsx.set_integration_credentials(bigint, jsonb) is E'@resultFieldName ok\nReplaces an integration''s credentials (write-only: they can never be read back).';
revoke execute on function dsx.set_integration_credentials(bigint, jsonb) from public;
grant execute on function dsx.set_integration_credentials(bigint, jsonb) to dsx_operator;

create or replace function dsx.create_scope(
  p_integration_id bigint, p_name text, p_root text, p_include_globs text[] default '{}',
  p_exclude_globs text[] default '{}', p_policy jsonb default '{}', p_monitor boolean default false
) returns dsx.scopes language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
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
comment on function dsx.create_scope(bigint, text, text, text[], text[], jsonb, boolean) is E'@resultFieldName scope\nCreates a scope; refused when its root overlaps another scope of the same integration.';
revoke execute on function dsx.create_scope(bigint, text, text, text[], text[], jsonb, boolean) from public;
grant execute on function dsx.create_scope(bigint, text, text, text[], text[], jsonb, boolean) to dsx_operator;

create or replace function dsx.set_scope_policy(p_scope_id bigint, p_policy jsonb) returns dsx.scopes language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
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
comment on function dsx.set_scope_policy(bigint, jsonb) is E'@resultFieldName scope\nSets a scope''s post-scan policy (validated).';
revoke execute on function dsx.set_scope_policy(bigint, jsonb) from public;
grant execute on function dsx.set_scope_policy(bigint, jsonb) to dsx_operator;

create or replace function dsx.create_notification_channel(p_name text, p_url text, p_secret text)
returns dsx.notification_channels language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
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
comment on function dsx.create_notification_channel(text, text, text) is E'@resultFieldName notificationChannel\nCreates a webhook channel; its secret is write-only.';
revoke execute on function dsx.create_notification_channel(text, text, text) from public;
grant execute on function dsx.create_notification_channel(text, text, text) to dsx_operator;
