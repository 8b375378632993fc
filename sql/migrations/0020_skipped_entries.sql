-- Nothing skipped silently: every entry an enumeration met and did not scan (a symlink, a FIFO or
-- socket, a directory that could not be listed, a folder marker, the connector's own quarantine or
-- probe objects) is a row here, recorded by the page's own transaction (dsx_private.record_page), and
-- counted per reason on the full scan. Before, an unreadable directory vanished from a scan that said
-- "completed 5/5", and symlinks and FIFOs left no record.
create table dsx.skipped_entries (
  id bigint generated always as identity primary key,
  full_scan_id bigint not null references dsx.full_scans on delete cascade,
  -- The enumeration page that met it (a page is recorded once, so its entries are too).
  page_no integer not null,
  object_identity text not null,
  reason text not null
    check (reason in ('symlink', 'special_file', 'unreadable_directory', 'directory_marker', 'internal')),
  -- Why, in the connector's words: the errno of an unreadable directory, the kind of special file.
  detail text,
  recorded_at timestamptz not null default now()
);

comment on table dsx.skipped_entries is E'@behavior -insert -update -delete\nEntries a full scan''s enumeration met and did not scan, with why (one row per entry and scan).';
comment on column dsx.skipped_entries.reason is E'@behavior +attribute:filterBy\nsymlink, special_file (FIFO, socket, device), unreadable_directory (its contents are unknown), directory_marker (an object-store key ending in "/"), internal (the connector''s own quarantine or probe objects).';

-- Once per entry and scan, whatever the connector reports: identities can be longer than a btree
-- entry may be (paths of 4,000 bytes exist), hence the hash.
create unique index skipped_entries_once_per_scan on dsx.skipped_entries (full_scan_id, dsx_private.identity_hash(object_identity));
-- Listing one scan's entries (optionally of one reason) in the order they were met, and the first
-- unreadable directories named by the progress view's warning.
create index skipped_entries_full_scan_idx on dsx.skipped_entries (full_scan_id, reason, id);

grant select on dsx.skipped_entries to dsx_viewer;

-- The counts per reason, on the full scan row the page transaction updates anyway (no extra row lock).
alter table dsx.full_scans add column skipped_symlink_count bigint not null default 0;
alter table dsx.full_scans add column skipped_special_file_count bigint not null default 0;
alter table dsx.full_scans add column skipped_unreadable_directory_count bigint not null default 0;
alter table dsx.full_scans add column skipped_directory_marker_count bigint not null default 0;
alter table dsx.full_scans add column skipped_internal_count bigint not null default 0;
comment on column dsx.full_scans.skipped_unreadable_directory_count is 'Directories that could not be listed: their contents were not scanned (the scan reports a warning).';

-- record_page takes the page's skipped entries (a signature change: rule 2 of sql/README.md).
drop function if exists dsx_private.record_page(bigint, integer, jsonb, text, uuid, integer);
