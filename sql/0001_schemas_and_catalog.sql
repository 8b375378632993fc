-- Schemas, integrations, scopes (with the no-overlap rule), notification channels and the audit log.
--
-- `dsx` is what operators see (psql, the CLI, later GraphQL); `dsx_private` holds internals:
-- credentials, secrets and the state-transition functions the workers call.

create schema dsx;
comment on schema dsx is 'DSX-Connect: what operators see and drive (integrations, scopes, full scans, results).';
create schema dsx_private;
comment on schema dsx_private is 'DSX-Connect internals: credentials, secrets, worker-side state transitions.';

-- Names that appear in CLIs and URLs: short, no spaces, no slashes.
create domain dsx.name as text
  check (value ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$');

create function dsx_private.raise(p_code text, p_message text, p_hint text default null)
returns void language plpgsql as $$
begin
  raise exception using errcode = p_code, message = p_message, hint = coalesce(p_hint, '');
end $$;

------------------------------------------------------------------------------------------------------
-- Integrations
------------------------------------------------------------------------------------------------------
create table dsx.integrations (
  id bigint generated always as identity primary key,
  name dsx.name not null unique,
  kind text not null check (kind in ('filesystem', 'synthetic', 's3', 'azure_blob')),
  -- Connection settings (filesystem: {"root": "/abs/dir", "quarantine_dir": "/abs/q"}). Never secrets.
  settings jsonb not null default '{}' check (jsonb_typeof(settings) = 'object'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on table dsx.integrations is 'One connection to a storage platform. Credentials live in dsx_private and are write-only.';

create function dsx_private.tg_integrations_validate() returns trigger language plpgsql as $$
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
create trigger integrations_validate before insert or update on dsx.integrations
  for each row execute function dsx_private.tg_integrations_validate();

create table dsx_private.integration_credentials (
  integration_id bigint primary key references dsx.integrations on delete cascade,
  credentials jsonb not null check (jsonb_typeof(credentials) = 'object'),
  updated_at timestamptz not null default now()
);

------------------------------------------------------------------------------------------------------
-- Scopes and the no-overlap rule
------------------------------------------------------------------------------------------------------

-- Canonical form of a root inside an integration: '/'-separated, no leading/trailing '/', no '.' or
-- empty segments; '' is the integration root. '..' can never be normalized away: it is refused.
create function dsx_private.normalize_root(p_root text) returns text
language plpgsql immutable as $$
declare
  v_parts text[];
begin
  if p_root is null then
    return '';
  end if;
  if p_root ~ '^/' then
    perform dsx_private.raise('22023', format('scope root %L must be relative to the integration root (no leading "/")', p_root));
  end if;
  select coalesce(array_agg(part order by ord), '{}') into v_parts
    from unnest(string_to_array(p_root, '/')) with ordinality as t(part, ord)
   where part <> '' and part <> '.';
  if '..' = any(v_parts) then
    perform dsx_private.raise('22023', format('scope root %L may not contain ".." segments', p_root));
  end if;
  return array_to_string(v_parts, '/');
end $$;

create function dsx_private.default_policy() returns jsonb language sql immutable as $$
  select '{"malicious": {"remediation": "none", "notify": true}}'::jsonb
$$;

-- Returns null when the policy is valid, else a message saying what is wrong.
-- Shape: {"<outcome>": {"remediation": "none|tag|move|delete", "notify": true|false|["channel", ...]}}
create function dsx_private.policy_error(p jsonb) returns text
language plpgsql immutable as $$
declare
  k text;
  v jsonb;
  f text;
begin
  if jsonb_typeof(p) is distinct from 'object' then
    return 'policy must be a JSON object mapping outcomes to {"remediation": ..., "notify": ...}';
  end if;
  for k, v in select * from jsonb_each(p) loop
    if k not in ('clean', 'malicious', 'unable_to_scan', 'unsupported_type', 'fetch_failed', 'timeout', 'policy_blocked') then
      return format('policy: unknown outcome %L (expected one of clean, malicious, unable_to_scan, unsupported_type, fetch_failed, timeout, policy_blocked)', k);
    end if;
    if jsonb_typeof(v) <> 'object' then
      return format('policy.%s must be an object like {"remediation": "move", "notify": true}', k);
    end if;
    for f in select jsonb_object_keys(v) loop
      if f not in ('remediation', 'notify') then
        return format('policy.%s: unknown field %L (expected remediation, notify)', k, f);
      end if;
    end loop;
    if v ? 'remediation' and (jsonb_typeof(v->'remediation') <> 'string' or v->>'remediation' not in ('none', 'tag', 'move', 'delete')) then
      return format('policy.%s.remediation must be one of none, tag, move, delete (got %s)', k, v->'remediation');
    end if;
    if v ? 'notify' and jsonb_typeof(v->'notify') not in ('boolean', 'array') then
      return format('policy.%s.notify must be true, false or a list of channel names (got %s)', k, v->'notify');
    end if;
    if jsonb_typeof(v->'notify') = 'array' and exists (
      select 1 from jsonb_array_elements(v->'notify') e where jsonb_typeof(e) <> 'string') then
      return format('policy.%s.notify: channel names must be strings', k);
    end if;
  end loop;
  return null;
end $$;

create table dsx.scopes (
  id bigint generated always as identity primary key,
  integration_id bigint not null references dsx.integrations on delete restrict,
  name dsx.name not null unique,
  -- Directory / prefix inside the integration, normalized ('' = the whole integration).
  root text not null,
  include_globs text[] not null default '{}',
  exclude_globs text[] not null default '{}',
  enabled boolean not null default true,
  monitor boolean not null default false,
  -- Per-outcome overrides of dsx_private.default_policy().
  policy jsonb not null default '{}',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint scopes_policy_valid check (dsx_private.policy_error(policy) is null)
);
comment on table dsx.scopes is 'What to protect inside one integration. Within an integration no two scope roots may be identical or nested.';
create index scopes_integration_idx on dsx.scopes (integration_id);

-- The no-overlap rule. An advisory lock per integration serializes concurrent inserts/updates, so
-- two transactions can never both pass the check (each statement in this trigger takes a fresh
-- snapshot under READ COMMITTED, after the lock is granted, and so sees the other's commit).
create function dsx_private.tg_scopes_no_overlap() returns trigger language plpgsql as $$
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
create trigger scopes_no_overlap before insert or update on dsx.scopes
  for each row execute function dsx_private.tg_scopes_no_overlap();

------------------------------------------------------------------------------------------------------
-- Notification channels (webhooks); secrets are write-only
------------------------------------------------------------------------------------------------------
create table dsx.notification_channels (
  id bigint generated always as identity primary key,
  name dsx.name not null unique,
  kind text not null default 'webhook' check (kind in ('webhook')),
  url text not null check (url ~ '^https?://'),
  enabled boolean not null default true,
  created_at timestamptz not null default now()
);
create table dsx_private.notification_channel_secrets (
  channel_id bigint primary key references dsx.notification_channels on delete cascade,
  secret text not null check (length(secret) >= 8)
);

------------------------------------------------------------------------------------------------------
-- Append-only audit log
------------------------------------------------------------------------------------------------------
create table dsx.audit_log (
  id bigint generated always as identity primary key,
  at timestamptz not null default now(),
  actor text not null,
  action text not null,
  scope_id bigint,
  full_scan_id bigint,
  scan_result_id bigint,
  object_identity text,
  correlation_id uuid,
  detail jsonb not null default '{}'
);
comment on table dsx.audit_log is 'Append-only trail of what happened and who asked. Updates and deletes are refused.';
-- Scan-level entries are indexed by scan; per-object entries (one per finalized object, the bulk of
-- the log) are reached through scan_result_id only when asked, and carry no index of their own: each
-- index is one more write per object on the hot path. `id` orders the log in time.
create index audit_log_full_scan_idx on dsx.audit_log (full_scan_id) where full_scan_id is not null and scan_result_id is null;

create function dsx_private.tg_audit_log_append_only() returns trigger language plpgsql as $$
begin
  raise exception using errcode = '42501', message = 'dsx.audit_log is append-only: rows cannot be updated or deleted';
end $$;
create trigger audit_log_append_only before update or delete on dsx.audit_log
  for each row execute function dsx_private.tg_audit_log_append_only();
create trigger audit_log_no_truncate before truncate on dsx.audit_log
  for each statement execute function dsx_private.tg_audit_log_append_only();
