-- A listing that keeps failing shows: the last enumeration error of a scan, which attempt it was and
-- when the next one runs, until a page is recorded again (or the scan fails after the configured
-- number of attempts, DSX_ENUMERATION_MAX_ATTEMPTS). Before, such a scan showed "running 0/0+" for
-- hours of backoff with no error anywhere.
alter table dsx.full_scans add column enumeration_error text;
alter table dsx.full_scans add column enumeration_error_at timestamptz;
alter table dsx.full_scans add column enumeration_attempt integer;
alter table dsx.full_scans add column enumeration_max_attempts integer;
alter table dsx.full_scans add column enumeration_retry_at timestamptz;
comment on column dsx.full_scans.enumeration_error is 'The last listing error while it keeps failing (cleared when a page is recorded).';
comment on column dsx.full_scans.enumeration_retry_at is 'When the failing listing is tried again.';
