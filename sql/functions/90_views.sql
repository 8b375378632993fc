-- Repeatable: the one current definition of each view below, with its grants and smart tags. Applied
-- after the other function files (views may use their functions) whenever a file in sql/functions
-- changes. `create or replace view` may only append columns: any other change of a view's columns
-- needs a versioned `drop view` first (rules in sql/README.md).

-- Live progress for psql and GraphQL: counts, rate and ETA per full scan.
-- The percentage and the ETA need the total: both are null until enumeration is exhausted (before, a
-- scan 36% through a 200,000-object scope showed "95.3%, ETA 0s", the share of what had been listed so
-- far), and the ETA only while the scan runs and the scanner answers. Skipped entries are counted per reason; an unreadable
-- directory is also a warning naming the first three. side_effects and first_side_effect_failure join
-- the ledger through the scan's results: they cost a query of their own, so select them only where
-- they are shown (scan status), not in what polls (the progress subscription does not).
create or replace view dsx.full_scan_progress as
select f.id, f.scope_id, s.name as scope_name, f.status, f.discovered, f.finalized, f.pages,
       f.enumeration_exhausted,
       case when f.enumeration_exhausted and f.discovered > 0 then round(100.0 * f.finalized / f.discovered, 1) end
         as percent_finalized,
       round(extract(epoch from coalesce(f.finished_at, now()) - f.started_at)::numeric, 1) as elapsed_s,
       case when f.started_at is not null and coalesce(f.finished_at, now()) > f.started_at
            then round(f.finalized / extract(epoch from coalesce(f.finished_at, now()) - f.started_at)::numeric, 1) end
         as objects_per_s,
       -- No ETA while the scanner is unavailable either: nothing progresses until it answers.
       case when f.status = 'running' and f.enumeration_exhausted and f.finalized > 0 and f.discovered > f.finalized
                 and coalesce(sc.state, 'ok') = 'ok'
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
       sc.state as scanner_state, sc.since as scanner_since, sc.error as scanner_error,
       f.skipped_symlink_count + f.skipped_special_file_count + f.skipped_unreadable_directory_count
         + f.skipped_directory_marker_count + f.skipped_internal_count as skipped,
       jsonb_build_object('symlink', f.skipped_symlink_count, 'special_file', f.skipped_special_file_count,
                          'unreadable_directory', f.skipped_unreadable_directory_count,
                          'directory_marker', f.skipped_directory_marker_count,
                          'internal', f.skipped_internal_count) as skipped_reasons,
       case when f.skipped_unreadable_directory_count > 0 then
         format('%s %s could not be read: %s%s (not scanned)',
                f.skipped_unreadable_directory_count,
                case when f.skipped_unreadable_directory_count = 1 then 'directory' else 'directories' end,
                (select string_agg(to_json(e.object_identity)::text || coalesce(' (' || e.detail || ')', ''), ', ' order by e.id)
                   from (select x.id, x.object_identity, x.detail from dsx.skipped_entries x
                          where x.full_scan_id = f.id and x.reason = 'unreadable_directory'
                          order by x.id limit 3) e),
                case when f.skipped_unreadable_directory_count > 3
                     then format(' and %s more', f.skipped_unreadable_directory_count - 3) else '' end)
       end as enumeration_warning,
       coalesce((select jsonb_object_agg(c.status, c.n)
                   from (select e.status, count(*) as n
                           from dsx.scan_results r join dsx.side_effects e on e.scan_result_id = r.id
                          where r.full_scan_id = f.id group by e.status) c), '{}'::jsonb) as side_effects,
       (select jsonb_build_object('id', e.id, 'kind', e.kind, 'action', e.action, 'object_identity', r.object_identity,
                                  'channel', ch.name, 'detail', e.detail, 'executed_at', e.executed_at)
          from dsx.scan_results r
          join dsx.side_effects e on e.scan_result_id = r.id
          left join dsx.notification_channels ch on ch.id = e.channel_id
         where r.full_scan_id = f.id and e.status = 'failed'
         order by e.executed_at, e.id limit 1) as first_side_effect_failure,
       -- Admission window: objects enumerated and not yet finalized, the most allowed, and whether the
       -- listing waits for room right now (a normal, brief state of a large scan: finalization resumes it).
       f.discovered - f.finalized as in_flight, f.scan_window,
       (f.status = 'running' and f.enumeration_paused_at is not null) as enumeration_paused
  from dsx.full_scans f
  left join lateral (
    select s.state, s.since, s.error from dsx.scanner_status s
     where s.last_seen_at > now() - interval '2 minutes'
     order by (s.state = 'ok'), s.since
     limit 1) sc on true
  join dsx.scopes s on s.id = f.scope_id;
comment on view dsx.full_scan_progress is
  E'@primaryKey id\n@foreignKey (id) references dsx.full_scans (id)|@fieldName fullScan|@foreignFieldName progress\n@foreignKey (scope_id) references dsx.scopes (id)|@fieldName scope|@foreignFieldName progress\n@behavior -insert -update -delete\nOne row per full scan with progress (finalized/discovered; percentage and ETA once enumeration is exhausted), rate, skipped entries and side effects.';
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
