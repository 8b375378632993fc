-- The result type of dsx.start_full_scan. The pipeline's state transitions that this migration
-- defined live in sql/functions (10_common.sql, 30_full_scans.sql, 40_scan_results.sql).

create type dsx.start_full_scan_result as (full_scan_id bigint, already_active boolean, status text);
