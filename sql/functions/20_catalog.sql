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
    -- A quarantine inside the share lets a share user plant symlinks in it: it must be outside the root
    -- (lexically here; the connector also checks real paths, owner and mode when it is used).
    if new.settings ? 'quarantine_dir' and (rtrim(new.settings->>'quarantine_dir', '/') = rtrim(new.settings->>'root', '/')
        or starts_with(rtrim(new.settings->>'quarantine_dir', '/') || '/', rtrim(new.settings->>'root', '/') || '/')
        or starts_with(rtrim(new.settings->>'root', '/') || '/', rtrim(new.settings->>'quarantine_dir', '/') || '/')) then
      perform dsx_private.raise('22023', format('filesystem integration %s: settings.quarantine_dir %s must be outside the integration root %s (a share user could plant symlinks in it)',
                                                new.name, new.settings->>'quarantine_dir', new.settings->>'root'),
                                'choose a directory outside the share, owned by the service user and not writable by others (default: <DSX_DATA_DIR>/quarantine/<integration id>)');
    end if;
  elsif new.kind = 's3' then
    if jsonb_typeof(new.settings->'bucket') is distinct from 'string' or new.settings->>'bucket' !~ '^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$' then
      perform dsx_private.raise('22023', format('s3 integration %s needs settings.bucket, a bucket name (3-63 lowercase letters, digits, dots and hyphens)', new.name));
    end if;
    if new.settings ? 'quarantine_bucket' and new.settings ? 'quarantine_prefix' then
      perform dsx_private.raise('22023', format('s3 integration %s: set settings.quarantine_bucket or settings.quarantine_prefix, not both', new.name));
    end if;
  elsif new.kind = 'azure_blob' then
    if jsonb_typeof(new.settings->'container') is distinct from 'string' or new.settings->>'container' !~ '^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$' then
      perform dsx_private.raise('22023', format('azure_blob integration %s needs settings.container, a container name (3-63 lowercase letters, digits and single hyphens)', new.name));
    end if;
    if new.settings ? 'quarantine_container' and new.settings ? 'quarantine_prefix' then
      perform dsx_private.raise('22023', format('azure_blob integration %s: set settings.quarantine_container or settings.quarantine_prefix, not both', new.name));
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

-- Append-only, but for the retention sweep: dsx_private.retention_sweep_audit_log sets a transaction-
-- local floor (dsx.audit_retention_floor, UTC ISO 8601) around its own DELETE, and only rows older
-- than it go. Without it every UPDATE, DELETE and TRUNCATE is refused. A floor less than a day old is
-- ignored (a retention is 1 day at least), so setting it by hand cannot remove the recent trail either.
-- (The owner can still disable the trigger: this guards against mistakes and every other role.)
create or replace function dsx_private.tg_audit_log_append_only() returns trigger language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
  v_floor text := current_setting('dsx.audit_retention_floor', true);
begin
  if tg_op = 'DELETE' and v_floor ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$' then
    if v_floor::timestamptz <= now() - interval '1 day' and old.at < v_floor::timestamptz then
      return old;
    end if;
  end if;
  raise exception using errcode = '42501', message = 'dsx.audit_log is append-only: rows cannot be updated or deleted',
    hint = 'entries older than DSX_RETENTION_AUDIT_DAYS are removed by the retention sweep (dsx-connect retention)';
end $$;
create or replace trigger audit_log_append_only before update or delete on dsx.audit_log
  for each row execute function dsx_private.tg_audit_log_append_only();
create or replace trigger audit_log_no_truncate before truncate on dsx.audit_log
  for each statement execute function dsx_private.tg_audit_log_append_only();

------------------------------------------------------------------------------------------------------
-- The audit trail of the catalog: every create, update and delete of integrations, scopes,
-- notification channels, API tokens, credentials and secrets, by whom (dsx_private.actor()), with what
-- changed. Secrets and credentials are recorded as having been set, never with their values.
------------------------------------------------------------------------------------------------------
create or replace function dsx_private.tg_catalog_audit() returns trigger language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_entity text := case tg_table_name
    when 'integrations' then 'integration'
    when 'scopes' then 'scope'
    when 'notification_channels' then 'notification_channel'
    when 'api_tokens' then 'api_token'
    when 'integration_credentials' then 'integration.credentials'
    when 'notification_channel_secrets' then 'notification_channel.secret'
    when 'integration_event_secrets' then 'integration.event_secret'
  end;
  -- Columns never written to the log: values of secrets, and bookkeeping.
  v_hidden text[] := array['credentials', 'secret', 'token_sha256', 'updated_at', 'created_at'];
  v_old jsonb := case when tg_op <> 'INSERT' then to_jsonb(old) end;
  v_new jsonb := case when tg_op <> 'DELETE' then to_jsonb(new) end;
  v_row jsonb := coalesce(v_new, v_old);
  v_changes jsonb;
  v_action text;
  v_detail jsonb;
begin
  if tg_op = 'UPDATE' then
    select coalesce(jsonb_object_agg(k, case when k = any(v_hidden) then '"(changed)"'::jsonb
                                             else jsonb_build_object('old', v_old -> k, 'new', v_new -> k) end), '{}')
      into v_changes
      from jsonb_object_keys(v_new) k
     where (v_old -> k) is distinct from (v_new -> k) and k not in ('updated_at', 'created_at');
    if v_changes = '{}' then
      return null; -- an update that changed nothing is not an event
    end if;
  end if;
  v_action := v_entity || '.' || case
    when tg_table_name = 'api_tokens' and tg_op = 'UPDATE' and v_changes ? 'revoked_at' then 'revoked'
    when tg_table_name in ('integration_credentials', 'notification_channel_secrets', 'integration_event_secrets')
      then case tg_op when 'DELETE' then 'deleted' else 'set' end
    else case tg_op when 'INSERT' then 'created' when 'UPDATE' then 'updated' else 'deleted' end
  end;
  v_detail := (select coalesce(jsonb_object_agg(k, v_row -> k), '{}') from jsonb_object_keys(v_row) k where not (k = any(v_hidden)));
  if v_changes is not null then
    v_detail := v_detail || jsonb_build_object('changes', v_changes);
  end if;
  insert into dsx.audit_log (actor, action, scope_id, detail)
  values (dsx_private.actor(), v_action,
          case when tg_table_name = 'scopes' then (v_row ->> 'id')::bigint end, v_detail);
  return null;
end $$;
create or replace trigger integrations_audit after insert or update or delete on dsx.integrations
  for each row execute function dsx_private.tg_catalog_audit();
create or replace trigger scopes_audit after insert or update or delete on dsx.scopes
  for each row execute function dsx_private.tg_catalog_audit();
create or replace trigger notification_channels_audit after insert or update or delete on dsx.notification_channels
  for each row execute function dsx_private.tg_catalog_audit();
create or replace trigger api_tokens_audit after insert or update or delete on dsx.api_tokens
  for each row execute function dsx_private.tg_catalog_audit();
create or replace trigger integration_credentials_audit after insert or update or delete on dsx_private.integration_credentials
  for each row execute function dsx_private.tg_catalog_audit();
create or replace trigger notification_channel_secrets_audit after insert or update or delete on dsx_private.notification_channel_secrets
  for each row execute function dsx_private.tg_catalog_audit();
create or replace trigger integration_event_secrets_audit after insert or update or delete on dsx_private.integration_event_secrets
  for each row execute function dsx_private.tg_catalog_audit();

-- History is never deleted with the catalog: a scope that has full scans, results or storage events
-- cannot be deleted (its scans, results, detections and ledger would go with it), only disabled; an
-- integration cannot be deleted while it has scopes or recorded events.
create or replace function dsx_private.tg_catalog_keep_history() returns trigger language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_scans bigint;
  v_results bigint;
  v_events bigint;
  v_scopes bigint;
begin
  if tg_table_name = 'scopes' then
    select count(*) into v_scans from dsx.full_scans f where f.scope_id = old.id;
    select count(*) into v_results from (select 1 from dsx.scan_results r where r.scope_id = old.id limit 1000000) x;
    select count(*) into v_events from (select 1 from dsx.monitor_events m where m.scope_id = old.id limit 1000000) x;
    if v_scans + v_results + v_events > 0 then
      raise exception using errcode = '2BP01',
        message = format('scope %s (id %s) has history (%s full scans, %s results, %s storage events) and cannot be deleted; disable it instead',
                         old.name, old.id, v_scans, v_results, v_events),
        hint = format('dsx-connect scope update %s --disable (GraphQL: updateScopeByRowId with scopePatch {enabled: false}); a disabled scope is neither scanned nor monitored and keeps its history', old.name);
    end if;
  else
    select count(*) into v_scopes from dsx.scopes s where s.integration_id = old.id;
    if v_scopes > 0 then
      raise exception using errcode = '2BP01',
        message = format('integration %s (id %s) still has %s scope(s) and cannot be deleted', old.name, old.id, v_scopes),
        hint = 'delete its scopes first (a scope with history can only be disabled: then disable the integration''s scopes instead of deleting the integration)';
    end if;
    select count(*) into v_events from (select 1 from dsx.monitor_events m where m.integration_id = old.id limit 1000000) x;
    if v_events > 0 then
      raise exception using errcode = '2BP01',
        message = format('integration %s (id %s) has history (%s storage events) and cannot be deleted', old.name, old.id, v_events),
        hint = 'keep it; its scopes can be disabled';
    end if;
  end if;
  return old;
end $$;
create or replace trigger scopes_keep_history before delete on dsx.scopes
  for each row execute function dsx_private.tg_catalog_keep_history();
create or replace trigger integrations_keep_history before delete on dsx.integrations
  for each row execute function dsx_private.tg_catalog_keep_history();

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
  return v;
end $$;
comment on function dsx.create_notification_channel(text, text, text) is E'@resultFieldName notificationChannel\nCreates a webhook channel; its secret is write-only.';
revoke execute on function dsx.create_notification_channel(text, text, text) from public;
grant execute on function dsx.create_notification_channel(text, text, text) to dsx_operator;

-- What a worker needs to build an integration's connector besides its settings: its credentials. They
-- leave dsx_private only here, for the worker's own connection (the owner); no API role may call it.
create or replace function dsx_private.integration_credentials_get(p_integration_id bigint) returns jsonb
language sql stable set search_path = pg_catalog, pg_temp as $$
  select c.credentials from dsx_private.integration_credentials c where c.integration_id = p_integration_id
$$;
revoke execute on function dsx_private.integration_credentials_get(bigint) from public;
