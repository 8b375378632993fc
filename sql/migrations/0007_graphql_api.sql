-- GraphQL API (PostGraphile v5 over schema `dsx`): what is exposed (smart tags), who may do what
-- (database roles and grants), API tokens, and the column the progress NOTIFYs are throttled by (the
-- notifying triggers are in sql/functions, 30_full_scans.sql and 40_scan_results.sql).

------------------------------------------------------------------------------------------------------
-- Roles. The server connects as the owner and switches, per request transaction, to the role of the
-- caller's token (`set local role`), so PostgreSQL itself enforces what a viewer or an operator may do.
------------------------------------------------------------------------------------------------------
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'dsx_viewer') then
    create role dsx_viewer nologin;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'dsx_operator') then
    create role dsx_operator nologin;
  end if;
exception when duplicate_object or unique_violation then
  null; -- created meanwhile by a migration of another database on the same server
end $$;

grant dsx_viewer to dsx_operator;

do $$
begin
  -- The connecting role must be allowed to switch to both (a superuser already is).
  execute format('grant dsx_viewer, dsx_operator to %I', current_user);
exception when others then
  raise notice 'could not grant dsx_viewer/dsx_operator to %: %', current_user, sqlerrm;
end $$;

-- Viewer: read everything in dsx (credentials and secrets live in dsx_private: no grant there).
-- Operator: updates/deletes of the catalog through GraphQL; the operator functions' own grants (and
-- their `security definer`) are beside their bodies in sql/functions.
grant usage on schema dsx to dsx_viewer;

grant select on all tables in schema dsx to dsx_viewer;

grant update (name, settings), delete on dsx.integrations to dsx_operator;

grant update (name, root, include_globs, exclude_globs, enabled, monitor, policy), delete on dsx.scopes to dsx_operator;

------------------------------------------------------------------------------------------------------
-- API tokens: only their SHA-256 is stored; the token itself is shown once, when created.
------------------------------------------------------------------------------------------------------
create table dsx_private.api_tokens (
  id bigint generated always as identity primary key,
  name dsx.name not null unique,
  role text not null check (role in ('viewer', 'operator')),
  token_sha256 text not null unique,
  created_at timestamptz not null default now(),
  expires_at timestamptz,
  revoked_at timestamptz
);

------------------------------------------------------------------------------------------------------
-- What GraphQL shows (PostGraphile v5 behaviors). Writes go through the operator functions; reads
-- come from reflection.
------------------------------------------------------------------------------------------------------
comment on table dsx.integrations is E'@behavior -insert\nOne connection to a storage platform. Credentials live in dsx_private and are write-only.';

comment on table dsx.scopes is E'@behavior -insert\nWhat to protect inside one integration. Within an integration no two scope roots may be identical or nested.';

comment on table dsx.full_scans is E'@behavior -insert -update -delete\nOne enumeration of one scope. Counters count finalized objects; completed exactly when enumeration is exhausted and finalized = discovered.';

comment on table dsx.scan_results is E'@behavior -insert -update -delete\nOne row per scan job: created pending when the job is enqueued, finalized once with the normalized outcome and the raw DSXA response.';

comment on table dsx.objects is E'@behavior -insert -update -delete\nLatest known state per scope + object identity: reflects the latest finalized scan from any source.';

comment on table dsx.side_effects is E'@behavior -insert -update -delete\nLedger of policy decisions (remediations, notifications), each executed at most once.';

comment on table dsx.notification_channels is E'@behavior -insert -update -delete\nWebhook channels; their secrets are write-only.';

comment on table dsx.audit_log is E'@behavior -insert -update -delete\nAppend-only trail of what happened and who asked. Updates and deletes are refused.';

------------------------------------------------------------------------------------------------------
-- Notifications for subscriptions. Per full scan: channel 'dsx_full_scan:<id>' with
-- {"id", "status", "kind": "status"|"progress", "finished"}; every status change, and progress at most
-- once per 200 ms per scan (the throttle is the row's progress_notified_at, checked under the row lock
-- every counter update already takes). Per scope: 'dsx_scan_results:<scope id>' with
-- {"r": [[scan result id, outcome], ...]} per finalizing statement, in chunks well under 8000 bytes.
------------------------------------------------------------------------------------------------------
alter table dsx.full_scans add column progress_notified_at timestamptz;

comment on column dsx.full_scans.progress_notified_at is E'@behavior -*\nWhen the last progress NOTIFY was sent (throttle).';

-- Filtering and ordering beyond what indexes give by default (PostGraphile exposes indexed columns only).
comment on column dsx.scan_results.outcome is E'@behavior +attribute:filterBy +attribute:orderBy';

comment on column dsx.scan_results.finalized_at is E'@behavior +attribute:filterBy +attribute:orderBy';

comment on column dsx.scan_results.state is E'@behavior +attribute:filterBy';

comment on column dsx.objects.last_outcome is E'@behavior +attribute:filterBy +attribute:orderBy';

comment on column dsx.objects.last_finalized_at is E'@behavior +attribute:orderBy';

comment on column dsx.full_scans.status is E'@behavior +attribute:filterBy +attribute:orderBy';

comment on column dsx.audit_log.action is E'@behavior +attribute:filterBy';

comment on column dsx.audit_log.at is E'@behavior +attribute:orderBy';
