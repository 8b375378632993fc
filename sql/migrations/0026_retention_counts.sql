-- Retention and the invariant checker: a full scan counts the results the retention sweep removed
-- (dsx_private.retention_sweep_scan_results), so `scan verify` of an old scan compares its counters
-- with the rows left plus the rows removed instead of reporting a mismatch.
alter table dsx.full_scans add column results_removed bigint not null default 0;
comment on column dsx.full_scans.results_removed is 'Results of this scan the retention sweep removed (DSX_RETENTION_RESULTS_DAYS); the counters still count them.';
