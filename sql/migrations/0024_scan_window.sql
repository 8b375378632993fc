-- Admission control: a full scan keeps at most a window of objects enumerated but not yet finalized.
-- The page transaction (dsx_private.record_page) records the window and page size its enumerator runs
-- with and, when the next page would not fit, pauses instead of queuing it; the finalize transaction
-- that makes room again queues that page (dsx_private.finalize_results). Both decide under the full
-- scan's row lock, so a pause is never missed, and the cursor is durable as before. The queue then holds
-- at most the windows of the running scans, whatever their scopes' sizes.
alter table dsx.full_scans add column scan_window integer check (scan_window is null or scan_window > 0);
alter table dsx.full_scans add column page_size integer check (page_size is null or page_size > 0);
alter table dsx.full_scans add column enumeration_paused_at timestamptz;
comment on column dsx.full_scans.scan_window is 'Objects enumerated but not yet finalized that this scan may have at most (DSX_SCAN_WINDOW of the enumerating worker; null: unbounded, scans started before version 0024).';
comment on column dsx.full_scans.page_size is 'Objects per enumeration page (DSX_PAGE_SIZE of the enumerating worker): the room a page needs in the window.';
comment on column dsx.full_scans.enumeration_paused_at is 'Set while enumeration waits for room in the window (the next page is queued when finalization makes room).';

-- record_page takes the window and page size (a signature change: rule 2 of sql/README.md).
drop function if exists dsx_private.record_page(bigint, integer, jsonb, text, uuid, integer, jsonb);
drop function if exists dsx_private.record_page(bigint, integer, jsonb, text, uuid, integer);
