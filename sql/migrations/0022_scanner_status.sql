-- The scanner's health as each worker process sees it: a scanner outage is a state of the scanner,
-- shown by `scan status`, the progress subscription and /readyz ("scanner unavailable since ..."),
-- never a verdict on the objects scanned meanwhile (their scan jobs wait and resume).
create table dsx.scanner_status (
  -- One row per worker process with the scan role (hostname:pid:random).
  process_id text primary key,
  hostname text not null,
  pid integer not null,
  -- The scanner's base URL (never the token).
  dsxa_url text not null,
  state text not null check (state in ('ok', 'unavailable', 'unauthorized')),
  since timestamptz not null default now(),
  error text,
  last_seen_at timestamptz not null default now()
);
comment on table dsx.scanner_status is E'@behavior -insert -update -delete\nThe scanner (DSXA) as each worker process with the scan role sees it: ok, unavailable or unauthorized, since when, and why.';
grant select on dsx.scanner_status to dsx_viewer;
