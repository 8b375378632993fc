-- An event that names a version already scanned (its etag is the etag of the object's latest
-- finalized result) scans nothing: S3 and Event Grid deliver at least once, and one write can yield
-- several notifications. Such events end 'ignored' with reason 'unchanged', counted per scope.
alter table dsx.monitor_events drop constraint monitor_events_reason_check;
alter table dsx.monitor_events add constraint monitor_events_reason_check
  check (reason in ('no_scope', 'other_container', 'scope_disabled', 'monitoring_off', 'excluded', 'deleted',
                    'superseded', 'unchanged'));
alter table dsx.monitor_stats add column ignored_unchanged bigint not null default 0;
comment on column dsx.monitor_stats.ignored_unchanged is 'Events naming a version already scanned (same etag).';

-- bump_monitor_stats gains the count of unchanged events (a signature change: rule 2 of sql/README.md).
drop function if exists dsx_private.bump_monitor_stats(bigint, integer, integer, integer, integer, integer, integer);
