-- Schemas, integrations, scopes (with the no-overlap rule), notification channels and the audit log.
-- The functions and triggers of these tables are in sql/functions (20_catalog.sql); the check
-- constraint of dsx.scopes uses dsx_private.policy_error from sql/functions/00_foundation.sql, which is
-- applied before the versioned migrations (and creates the two schemas if they do not exist yet).
--
-- `dsx` is what operators see (psql, the CLI, GraphQL); `dsx_private` holds internals:
-- credentials, secrets and the state-transition functions the workers call.
-- Nobody but the database owner creates objects in schema public (PostgreSQL 15 made this the
-- default; on PostgreSQL 14 and on clusters upgraded from it, PUBLIC may create there, and an object
-- planted there can shadow a built-in that a privileged session resolves through its search_path).
-- Our functions also pin their own search_path (sql/README.md, rule 5). Revoking needs the owner of
-- schema public: where the migrating role is not (PostgreSQL 14 with a non-superuser owner), say so.
do $$
begin
  revoke create on schema public from public;
exception when insufficient_privilege then
  raise warning 'could not revoke CREATE on schema public from PUBLIC (%): run it as the owner of schema public', sqlerrm;
end $$;

create schema if not exists dsx;

comment on schema dsx is 'DSX-Connect: what operators see and drive (integrations, scopes, full scans, results).';

create schema if not exists dsx_private;

comment on schema dsx_private is 'DSX-Connect internals: credentials, secrets, worker-side state transitions.';

-- Names that appear in CLIs and URLs: short, no spaces, no slashes.
create domain dsx.name as text
  check (value ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$');

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

create table dsx_private.integration_credentials (
  integration_id bigint primary key references dsx.integrations on delete cascade,
  credentials jsonb not null check (jsonb_typeof(credentials) = 'object'),
  updated_at timestamptz not null default now()
);

------------------------------------------------------------------------------------------------------
-- Scopes and the no-overlap rule (enforced by the trigger dsx_private.tg_scopes_no_overlap)
------------------------------------------------------------------------------------------------------
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
