-- Repeatable: the one current definition of each function below, with its attributes, grants and
-- smart tags. Applied by `dsx-connect migrate` whenever a file in sql/functions changes (rules in
-- sql/README.md).
--
-- The catalog: integrations, scopes (the no-overlap rule), notification channels, the append-only audit
-- log, and the operator entry points shared by the CLI, psql and GraphQL. The operator functions (and
-- the catalog triggers) reach into dsx_private, which the API roles cannot touch directly: they run with
-- their owner's rights (security definer).

-- Names (dsx.name, sql/migrations/0001): what the rule is, in words, for every message that refuses a name.
create or replace function dsx_private.name_rule() returns text language sql immutable set search_path = pg_catalog, pg_temp as $$
  select 'a name is 1-63 characters: letters, digits, ".", "_" and "-", starting with a letter or digit'
$$;

-- Refuses a name outside dsx.name with the rule, before an insert would fail on the domain with
-- "value for domain dsx.name violates check constraint" (which names neither the value nor the rule).
-- The domain itself decides; this only says it in words.
create or replace function dsx_private.check_name(p_what text, p_name text) returns void language plpgsql stable set search_path = pg_catalog, pg_temp as $$
begin
  if p_name is null then
    perform dsx_private.raise('22023', format('%s needs a name: %s (dsx.name)', p_what, dsx_private.name_rule()));
  end if;
  perform p_name::dsx.name;
exception when check_violation then
  -- 80 characters of the value are enough to recognize it; a megabyte of it in a log line is not.
  perform dsx_private.raise('22023', format('%s name %s is not allowed: %s (dsx.name)',
                                            p_what, to_json(left(p_name, 80)), dsx_private.name_rule()));
end $$;

-- Names are unique per kind of entry. The unique constraints still decide (a concurrent insert can pass
-- this check); this says it in words for every path (functions, CLI, psql, GraphQL updates) instead of
-- "duplicate key value violates unique constraint ...".
create or replace function dsx_private.tg_catalog_unique_name() returns trigger language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_taken boolean;
  v_what text := case tg_table_name
    when 'integrations' then 'an integration' when 'scopes' then 'a scope'
    when 'notification_channels' then 'a channel' when 'api_tokens' then 'an API token' end;
  v_list text := case tg_table_name
    when 'integrations' then 'integration' when 'scopes' then 'scope'
    when 'notification_channels' then 'channel' when 'api_tokens' then 'token' end;
begin
  if tg_op = 'UPDATE' and new.name = old.name then
    return new;
  end if;
  execute format('select exists (select 1 from %I.%I t where t.name = $1 and t.id is distinct from $2)', tg_table_schema, tg_table_name)
    into v_taken using new.name, new.id;
  if v_taken then
    perform dsx_private.raise('23505', format('%s named %s already exists (see: dsx-connect %s list)', v_what, to_json(new.name::text), v_list));
  end if;
  return new;
end $$;
create or replace trigger integrations_unique_name before insert or update of name on dsx.integrations
  for each row execute function dsx_private.tg_catalog_unique_name();
create or replace trigger scopes_unique_name before insert or update of name on dsx.scopes
  for each row execute function dsx_private.tg_catalog_unique_name();
create or replace trigger notification_channels_unique_name before insert or update of name on dsx.notification_channels
  for each row execute function dsx_private.tg_catalog_unique_name();
create or replace trigger api_tokens_unique_name before insert or update of name on dsx.api_tokens
  for each row execute function dsx_private.tg_catalog_unique_name();

-- A channel's URL must be http(s) with a host: said in words before the table's check constraint
-- (notification_channels_url_check) would refuse it with only the constraint's name.
create or replace function dsx_private.tg_notification_channels_validate() returns trigger language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
begin
  if new.url is null or new.url !~ '^https?://[^/?#[:space:]]+([/?#][^[:space:]]*)?$' then
    perform dsx_private.raise('22023', format('channel %s: url %s is not an http(s) URL (e.g. https://hooks.example/dsx)',
                                              new.name, coalesce(to_json(left(new.url, 200))::text, 'null')),
                              'webhook channels take an http:// or https:// URL with a host name, and no spaces');
  end if;
  return new;
end $$;
create or replace trigger notification_channels_validate before insert or update of url on dsx.notification_channels
  for each row execute function dsx_private.tg_notification_channels_validate();

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

-- What makes a policy destructive, one entry per outcome ("clean: move", "malicious: delete"): a delete
-- for any outcome removes objects for good, and any remediation of clean objects acts on files no
-- scanner flagged. Verdict tags ("tag": true) are metadata, not a remediation. Empty when nothing is
-- destructive; meant for policies that dsx_private.policy_error accepts.
create or replace function dsx_private.policy_destructive(p jsonb) returns text[] language sql immutable set search_path = pg_catalog, pg_temp as $$
  select coalesce(array_agg(e.k || ': ' || (e.v->>'remediation') order by e.k), '{}')
    from jsonb_each(case when jsonb_typeof(p) = 'object' then p else '{}' end) e(k, v)
   where jsonb_typeof(e.v) = 'object'
     and (e.v->>'remediation' = 'delete' or (e.k = 'clean' and coalesce(e.v->>'remediation', 'none') <> 'none'))
$$;

-- Two rules on a scope's policy, checked whenever it is set (dsx.create_scope, dsx.set_scope_policy,
-- GraphQL updateScopeByRowId, psql), after its shape (scopes_no_overlap runs first):
-- * Every channel it names (notify: ["ops", ...]) exists. The channel rows stay locked (key share) until
--   commit: a concurrent delete of one waits, then sees this policy (tg_channels_named_by_policies);
--   a policy set after a delete committed finds the channel gone.
-- * A destructive policy (dsx_private.policy_destructive) comes with a confirmation made in the same
--   row change: destructive_confirmed_by/_at, which the functions write when p_allow_destructive is
--   true (at clock_timestamp(), so two changes in one transaction never share one). The API roles may
--   not write those columns, so an update through GraphQL cannot confirm; the owner, in psql, can on
--   purpose. A policy that is not destructive carries no confirmation.
create or replace function dsx_private.tg_scopes_policy_checks() returns trigger language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_destructive text[] := dsx_private.policy_destructive(new.policy);
  v_named text[];
  v_missing text[];
begin
  if cardinality(v_destructive) = 0 then
    new.destructive_confirmed_by := null;
    new.destructive_confirmed_at := null;
  end if;
  if tg_op = 'UPDATE' and new.policy is not distinct from old.policy then
    return new;
  end if;
  select coalesce(array_agg(distinct n.name), '{}') into v_named
    from jsonb_each(new.policy) p(k, v)
   cross join lateral jsonb_array_elements_text(case when jsonb_typeof(p.v->'notify') = 'array' then p.v->'notify' else '[]' end) n(name);
  if cardinality(v_named) > 0 then
    perform 1 from dsx.notification_channels c where c.name = any(v_named) for key share;
    select coalesce(array_agg(to_json(n.name)::text order by n.name), '{}') into v_missing
      from unnest(v_named) n(name)
     where not exists (select 1 from dsx.notification_channels c where c.name = n.name);
    if cardinality(v_missing) > 0 then
      perform dsx_private.raise('23503',
        format('scope %s: the policy names %s %s, which %s not exist (see: dsx-connect channel list)', new.name,
               case when cardinality(v_missing) = 1 then 'notification channel' else 'notification channels' end,
               array_to_string(v_missing, ', '), case when cardinality(v_missing) = 1 then 'does' else 'do' end),
        'add the channel first (dsx-connect channel add --name NAME --url URL --secret-file FILE), or name an existing one');
    end if;
  end if;
  if cardinality(v_destructive) > 0 and (new.destructive_confirmed_by is null or new.destructive_confirmed_at is null
      or (tg_op = 'UPDATE' and new.destructive_confirmed_at is not distinct from old.destructive_confirmed_at)) then
    perform dsx_private.raise('22023',
      format('scope %s: the policy is destructive (%s) and needs an explicit confirmation: --allow-destructive '
             '(dsx-connect scope add, scope set-policy), allowDestructive: true (GraphQL createScope, setScopePolicy) '
             'or p_allow_destructive => true (dsx.create_scope, dsx.set_scope_policy)', new.name, array_to_string(v_destructive, ', ')),
      'delete removes objects for good, and a remediation of clean objects acts on files no scanner flagged; the confirmation is '
      'recorded on the scope and in the audit log with who gave it (updateScopeByRowId cannot confirm: use setScopePolicy)');
  end if;
  return new;
end $$;
create or replace trigger scopes_policy_checks before insert or update on dsx.scopes
  for each row execute function dsx_private.tg_scopes_policy_checks();

-- A channel that a policy names (notify: ["ops"]) can be neither deleted nor renamed: the policy would
-- name a channel that does not exist. Deleting a channel no policy names keeps its delivery history
-- (the ledger rows stay, their channel_id set null; the audit log keeps its id, name and URL).
create or replace function dsx_private.tg_channels_named_by_policies() returns trigger language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_scopes text[];
begin
  if tg_op = 'UPDATE' and new.name = old.name then
    return new;
  end if;
  select coalesce(array_agg(s.name::text order by s.name), '{}') into v_scopes
    from dsx.scopes s
   where exists (select 1 from jsonb_each(s.policy) p(k, v)
                  where jsonb_typeof(p.v->'notify') = 'array' and p.v->'notify' ? old.name::text);
  if cardinality(v_scopes) > 0 then
    raise exception using errcode = '2BP01',
      message = format('channel %s (id %s) is named by the policy of %s %s and cannot be %s', old.name, old.id,
                       case when cardinality(v_scopes) = 1 then 'scope' else 'scopes' end, array_to_string(v_scopes, ', '),
                       case tg_op when 'DELETE' then 'deleted' else 'renamed' end),
      hint = 'take it out of those policies first (dsx-connect scope set-policy SCOPE JSON; GraphQL setScopePolicy)';
  end if;
  return case tg_op when 'DELETE' then old else new end;
end $$;
create or replace trigger notification_channels_named_by_policies before delete or update of name on dsx.notification_channels
  for each row execute function dsx_private.tg_channels_named_by_policies();

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
  -- A destructive policy confirmed by this change says so, with who confirmed it and what it destroys.
  if tg_table_name = 'scopes' and v_new ->> 'destructive_confirmed_at' is not null
     and (tg_op = 'INSERT' or v_changes ? 'destructive_confirmed_at') then
    v_detail := v_detail || jsonb_build_object('destructive_policy', jsonb_build_object(
      'confirmed_by', v_new -> 'destructive_confirmed_by', 'confirmed_at', v_new -> 'destructive_confirmed_at',
      'destructive', to_jsonb(dsx_private.policy_destructive(v_new -> 'policy'))));
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
  perform dsx_private.check_name('integration', p_name);
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

-- A destructive policy (dsx_private.policy_destructive) needs p_allow_destructive; the confirmation is
-- recorded on the scope (destructive_confirmed_by: dsx_private.actor(); _at) and in the audit log.
create or replace function dsx.create_scope(
  p_integration_id bigint, p_name text, p_root text, p_include_globs text[] default '{}',
  p_exclude_globs text[] default '{}', p_policy jsonb default '{}', p_monitor boolean default false,
  p_allow_destructive boolean default false
) returns dsx.scopes language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v dsx.scopes;
  v_confirm boolean := coalesce(p_allow_destructive, false);
begin
  perform dsx_private.check_name('scope', p_name);
  if not exists (select 1 from dsx.integrations where id = p_integration_id) then
    perform dsx_private.raise('P0002', format('unknown integration id %s', p_integration_id));
  end if;
  insert into dsx.scopes (integration_id, name, root, include_globs, exclude_globs, policy, monitor,
                          destructive_confirmed_by, destructive_confirmed_at)
  values (p_integration_id, p_name, coalesce(p_root, ''), coalesce(p_include_globs, '{}'),
          coalesce(p_exclude_globs, '{}'), coalesce(p_policy, '{}'), coalesce(p_monitor, false),
          case when v_confirm then dsx_private.actor() end, case when v_confirm then clock_timestamp() end)
  returning * into v;
  return v;
end $$;
comment on function dsx.create_scope(bigint, text, text, text[], text[], jsonb, boolean, boolean) is E'@resultFieldName scope\nCreates a scope; refused when its root overlaps another scope of the same integration. A destructive policy (remediation delete for any outcome, or any remediation of clean objects) needs allowDestructive: true, recorded with who confirmed it.';
revoke execute on function dsx.create_scope(bigint, text, text, text[], text[], jsonb, boolean, boolean) from public;
grant execute on function dsx.create_scope(bigint, text, text, text[], text[], jsonb, boolean, boolean) to dsx_operator;

-- Setting the same policy again changes nothing (no audit entry); with p_allow_destructive a destructive
-- policy is confirmed (again) by the caller.
create or replace function dsx.set_scope_policy(p_scope_id bigint, p_policy jsonb, p_allow_destructive boolean default false)
returns dsx.scopes language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v dsx.scopes;
  v_confirm boolean := coalesce(p_allow_destructive, false);
begin
  if dsx_private.policy_error(p_policy) is not null then
    perform dsx_private.raise('22023', dsx_private.policy_error(p_policy));
  end if;
  update dsx.scopes s
     set policy = p_policy,
         destructive_confirmed_by = case when v_confirm then dsx_private.actor() else s.destructive_confirmed_by end,
         destructive_confirmed_at = case when v_confirm then clock_timestamp() else s.destructive_confirmed_at end
   where s.id = p_scope_id
  returning * into v;
  if not found then
    perform dsx_private.raise('P0002', format('unknown scope id %s', p_scope_id));
  end if;
  return v;
end $$;
comment on function dsx.set_scope_policy(bigint, jsonb, boolean) is E'@resultFieldName scope\nSets a scope''s post-scan policy (validated). A destructive policy (remediation delete for any outcome, or any remediation of clean objects) needs allowDestructive: true, recorded with who confirmed it.';
revoke execute on function dsx.set_scope_policy(bigint, jsonb, boolean) from public;
grant execute on function dsx.set_scope_policy(bigint, jsonb, boolean) to dsx_operator;

create or replace function dsx.create_notification_channel(p_name text, p_url text, p_secret text)
returns dsx.notification_channels language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v dsx.notification_channels;
begin
  perform dsx_private.check_name('channel', p_name);
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
