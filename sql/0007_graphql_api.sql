-- GraphQL API (PostGraphile v5 over schema `dsx`): what is exposed (smart tags), who may do what
-- (database roles and grants), API tokens, and the NOTIFYs that feed subscriptions.

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
grant usage on schema dsx to dsx_viewer;
grant select on all tables in schema dsx to dsx_viewer;

-- Operator: the operator functions, and updates/deletes of the catalog through GraphQL.
revoke execute on all functions in schema dsx from public;
grant execute on function
  dsx.start_full_scan(bigint, text),
  dsx.cancel_full_scan(bigint, text, text),
  dsx.create_integration(text, text, jsonb, jsonb),
  dsx.set_integration_credentials(bigint, jsonb),
  dsx.create_scope(bigint, text, text, text[], text[], jsonb, boolean),
  dsx.set_scope_policy(bigint, jsonb),
  dsx.create_notification_channel(text, text, text)
  to dsx_operator;
grant update (name, settings), delete on dsx.integrations to dsx_operator;
grant update (name, root, include_globs, exclude_globs, enabled, monitor, policy), delete on dsx.scopes to dsx_operator;

-- The operator functions (and the catalog triggers) reach into dsx_private and graphile_worker, which
-- the API roles cannot touch directly: they run with their owner's rights.
alter function dsx.start_full_scan(bigint, text) security definer;
alter function dsx.cancel_full_scan(bigint, text, text) security definer;
alter function dsx.create_integration(text, text, jsonb, jsonb) security definer;
alter function dsx.set_integration_credentials(bigint, jsonb) security definer;
alter function dsx.create_scope(bigint, text, text, text[], text[], jsonb, boolean) security definer;
alter function dsx.set_scope_policy(bigint, jsonb) security definer;
alter function dsx.create_notification_channel(text, text, text) security definer;
alter function dsx_private.tg_integrations_validate() security definer;
alter function dsx_private.tg_scopes_no_overlap() security definer;

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
comment on view dsx.full_scan_progress is
  E'@primaryKey id\n@foreignKey (id) references dsx.full_scans (id)|@fieldName fullScan|@foreignFieldName progress\n@foreignKey (scope_id) references dsx.scopes (id)|@fieldName scope|@foreignFieldName progress\n@behavior -insert -update -delete\nOne row per full scan with progress (finalized/discovered), rate and ETA.';
-- Started and canceled through the startFullScan/cancelFullScan mutations (graphql/plugins).
comment on function dsx.start_full_scan(bigint, text) is E'@behavior -queryField -mutationField -typeField\nStarts a full scan of a scope, or returns the active one.';
comment on function dsx.cancel_full_scan(bigint, text, text) is E'@behavior -queryField -mutationField -typeField\nCancels a queued or running full scan (drain or interrupt).';

------------------------------------------------------------------------------------------------------
-- Notifications for subscriptions. Per full scan: channel 'dsx_full_scan:<id>' with
-- {"id", "status", "kind": "status"|"progress", "finished"}; every status change, and progress at most
-- once per 200 ms per scan (the throttle is the row's progress_notified_at, checked under the row lock
-- every counter update already takes). Per scope: 'dsx_scan_results:<scope id>' with
-- {"r": [[scan result id, outcome], ...]} per finalizing statement, in chunks well under 8000 bytes.
------------------------------------------------------------------------------------------------------
alter table dsx.full_scans add column progress_notified_at timestamptz;
comment on column dsx.full_scans.progress_notified_at is E'@behavior -*\nWhen the last progress NOTIFY was sent (throttle).';

create or replace function dsx_private.notify_full_scan(p_id bigint, p_status text) returns void language plpgsql as $$
begin
  perform pg_notify('dsx_full_scan', json_build_object('id', p_id, 'status', p_status)::text);
  perform pg_notify('dsx_full_scan:' || p_id,
                    json_build_object('id', p_id, 'status', p_status, 'kind', 'status',
                                      'finished', (select f.finished_at is not null from dsx.full_scans f where f.id = p_id))::text);
end $$;

create function dsx_private.tg_full_scans_progress_notify() returns trigger language plpgsql as $$
begin
  if old.progress_notified_at is null or clock_timestamp() - old.progress_notified_at >= interval '200 milliseconds' then
    new.progress_notified_at := clock_timestamp();
    perform pg_notify('dsx_full_scan:' || new.id,
                      json_build_object('id', new.id, 'status', new.status, 'kind', 'progress',
                                        'finished', new.finished_at is not null)::text);
  end if;
  return new;
end $$;
create trigger full_scans_progress_notify before update on dsx.full_scans
  for each row when (new.finalized is distinct from old.finalized or new.discovered is distinct from old.discovered)
  execute function dsx_private.tg_full_scans_progress_notify();

create function dsx_private.tg_scan_results_notify() returns trigger language plpgsql as $$
declare
  r record;
begin
  for r in
    select c.scope_id, json_agg(c.item order by c.id) as items
      from (select n.scope_id, n.id, json_build_array(n.id, n.outcome) as item,
                   (row_number() over (partition by n.scope_id order by n.id) - 1) / 150 as chunk
              from new_rows n join old_rows o on o.id = n.id
             where n.state = 'finalized' and o.state <> 'finalized') c
     group by c.scope_id, c.chunk
  loop
    perform pg_notify('dsx_scan_results:' || r.scope_id, json_build_object('r', r.items)::text);
  end loop;
  return null;
end $$;
create trigger scan_results_notify after update on dsx.scan_results
  referencing new table as new_rows old table as old_rows
  for each statement execute function dsx_private.tg_scan_results_notify();

-- The invariant checker (0006) is a read-only query for viewers too; it reads graphile_worker's tables.
alter function dsx.verify_full_scan(bigint) security definer;
grant execute on function dsx.verify_full_scan(bigint) to dsx_viewer;

-- Filtering and ordering beyond what indexes give by default (PostGraphile exposes indexed columns only).
comment on column dsx.scan_results.outcome is E'@behavior +attribute:filterBy +attribute:orderBy';
comment on column dsx.scan_results.finalized_at is E'@behavior +attribute:filterBy +attribute:orderBy';
comment on column dsx.scan_results.state is E'@behavior +attribute:filterBy';
comment on column dsx.objects.last_outcome is E'@behavior +attribute:filterBy +attribute:orderBy';
comment on column dsx.objects.last_finalized_at is E'@behavior +attribute:orderBy';
comment on column dsx.full_scans.status is E'@behavior +attribute:filterBy +attribute:orderBy';
comment on column dsx.audit_log.action is E'@behavior +attribute:filterBy';
comment on column dsx.audit_log.at is E'@behavior +attribute:orderBy';

-- Mutation payloads name what they return.
comment on function dsx.create_integration(text, text, jsonb, jsonb) is E'@resultFieldName integration\nCreates an integration; credentials (optional) are stored write-only in dsx_private.';
comment on function dsx.set_integration_credentials(bigint, jsonb) is E'@resultFieldName ok\nReplaces an integration''s credentials (write-only: they can never be read back).';
comment on function dsx.create_scope(bigint, text, text, text[], text[], jsonb, boolean) is E'@resultFieldName scope\nCreates a scope; refused when its root overlaps another scope of the same integration.';
comment on function dsx.set_scope_policy(bigint, jsonb) is E'@resultFieldName scope\nSets a scope''s post-scan policy (validated).';
comment on function dsx.create_notification_channel(text, text, text) is E'@resultFieldName notificationChannel\nCreates a webhook channel; its secret is write-only.';
