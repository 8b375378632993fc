-- Retention (sql/functions/85_retention.sql, tasks/retention-sweep.ts): what the sweep's chunks need so
-- that each one is an index range, and where the walks over the tables with rows to keep stand.
--
-- No index on a timestamp of dsx.scan_results: finalizing a row is a HOT update because no index
-- covers a column it changes (migration 0002); an index on finalized_at would make every finalize write
-- a new entry in all five indexes. The sweep walks the primary key instead, from a cursor (below).

-- Deleting a result sets monitor_events.scan_result_id to null (on delete set null): without an index
-- on the referencing column every deleted result is a sequential scan of dsx.monitor_events.
create index monitor_events_scan_result_idx on dsx.monitor_events (scan_result_id) where scan_result_id is not null;

-- Debounce entries idle for longer than the events' retention, oldest first. One more index entry per
-- monitored scan (the row's last_scan_at changes with each one).
create index monitor_debounce_idle_idx on dsx_private.monitor_debounce (last_scan_at);

-- Per table the sweep deletes from: how many rows its last sweep deleted and when (dsx-connect
-- retention), and, for the tables walked along their primary key (scan_results and monitor_events,
-- which hold rows to keep whatever their age: the latest result of each object, results of running
-- scans, events not handled yet; audit_log, whose ids follow time), where the walk goes on: the next
-- chunk starts after `after_id`, never rereading kept rows or the dead index entries of the chunks
-- before it. The cursor survives a sweep whose time budget ran out, so a large table is walked to its
-- end over several sweeps instead of its first rows again and again; it goes back to 0 once a walk
-- reaches rows too young to delete.
create table dsx_private.retention_state (
  -- The table swept: scan_results, side_effects, monitor_events, monitor_debounce, event_signatures,
  -- audit_log, failed_jobs (graphile-worker's), invalid_jobs.
  table_name text primary key,
  after_id bigint not null default 0,
  updated_at timestamptz not null default now(),
  last_deleted bigint,
  last_swept_at timestamptz,
  -- The last sweep's retention.swept entry in dsx.audit_log (found by id: the log has no index on action).
  last_audit_id bigint
);
