-- Repeatable: the one current definition of each view below, with its grants and smart tags. Applied
-- after the other function files (views may use their functions) whenever a file in sql/functions
-- changes. `create or replace view` may only append columns: any other change of a view's columns
-- needs a versioned `drop view` first (rules in sql/README.md).

-- Live progress for psql and GraphQL: counts, rate and ETA per full scan.
create or replace view dsx.full_scan_progress as
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
       f.cancel_mode, f.error, f.requested_by, f.created_at, f.started_at, f.finished_at,
       f.enumeration_error, f.enumeration_error_at, f.enumeration_attempt, f.enumeration_max_attempts,
       f.enumeration_retry_at,
       -- The scanner as the live workers see it (the worst state, its earliest start, and why).
       sc.state as scanner_state, sc.since as scanner_since, sc.error as scanner_error
  from dsx.full_scans f
  left join lateral (
    select s.state, s.since, s.error from dsx.scanner_status s
     where s.last_seen_at > now() - interval '2 minutes'
     order by (s.state = 'ok'), s.since
     limit 1) sc on true
  join dsx.scopes s on s.id = f.scope_id;
comment on view dsx.full_scan_progress is
  E'@primaryKey id\n@foreignKey (id) references dsx.full_scans (id)|@fieldName fullScan|@foreignFieldName progress\n@foreignKey (scope_id) references dsx.scopes (id)|@fieldName scope|@foreignFieldName progress\n@behavior -insert -update -delete\nOne row per full scan with progress (finalized/discovered), rate and ETA.';
grant select on dsx.full_scan_progress to dsx_viewer;

-- psql and GraphQL: events, counters and what happened to them, per scope.
create or replace view dsx.monitor_overview as
  select s.id as scope_id, s.name as scope_name, s.monitor, s.enabled,
         coalesce(m.events_received, 0) as events_received,
         coalesce(m.events_scanned, 0) as events_scanned,
         coalesce(m.events_coalesced, 0) as events_coalesced,
         coalesce(m.ignored_deleted, 0) as ignored_deleted,
         coalesce(m.ignored_excluded, 0) as ignored_excluded,
         coalesce(m.ignored_disabled, 0) as ignored_disabled,
         m.last_event_at,
         coalesce(m.ignored_unchanged, 0) as ignored_unchanged
    from dsx.scopes s left join dsx.monitor_stats m on m.scope_id = s.id;
comment on view dsx.monitor_overview is
  E'@primaryKey scope_id\n@foreignKey (scope_id) references dsx.scopes (id)|@fieldName scope|@foreignFieldName monitorOverview\n@behavior -insert -update -delete\nMonitoring per scope: on/off and its event counters.';
grant select on dsx.monitor_overview to dsx_viewer;
