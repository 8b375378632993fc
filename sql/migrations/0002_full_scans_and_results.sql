-- Full scans, scan results (one per scan job), objects (latest state per scope + identity) and the
-- side-effect ledger. Their state transitions are in sql/functions (30_full_scans.sql,
-- 40_scan_results.sql, 50_side_effects.sql).

create table dsx.full_scans (
  id bigint generated always as identity primary key,
  scope_id bigint not null references dsx.scopes on delete cascade,
  status text not null default 'queued'
    check (status in ('queued', 'running', 'completed', 'canceled', 'failed')),
  enumeration_exhausted boolean not null default false,
  -- Cursor after the last recorded page (null before the first page and once exhausted).
  cursor text,
  pages integer not null default 0,
  discovered bigint not null default 0,
  finalized bigint not null default 0,
  clean_count bigint not null default 0,
  malicious_count bigint not null default 0,
  unable_to_scan_count bigint not null default 0,
  unsupported_type_count bigint not null default 0,
  fetch_failed_count bigint not null default 0,
  timeout_count bigint not null default 0,
  policy_blocked_count bigint not null default 0,
  canceled_count bigint not null default 0,
  cancel_mode text check (cancel_mode in ('drain', 'interrupt')),
  cancel_requested_at timestamptz,
  error text,
  requested_by text not null,
  correlation_id uuid not null default gen_random_uuid(),
  -- job_id of the FullScanScopeJob: the root of every job this scan spawns.
  root_job_id uuid not null default gen_random_uuid(),
  created_at timestamptz not null default now(),
  started_at timestamptz,
  finished_at timestamptz,
  updated_at timestamptz not null default now(),
  constraint full_scans_counts_consistent check (
    finalized <= discovered
    and finalized = clean_count + malicious_count + unable_to_scan_count + unsupported_type_count
                    + fetch_failed_count + timeout_count + policy_blocked_count + canceled_count),
  constraint full_scans_cancel_consistent check ((cancel_mode is null) = (cancel_requested_at is null))
);

comment on table dsx.full_scans is 'One enumeration of one scope. Counters count finalized objects; completed exactly when enumeration is exhausted and finalized = discovered.';

comment on column dsx.full_scans.finished_at is 'When the last object was finalized. A canceled scan in drain mode keeps null here until its in-flight objects are finalized.';

-- One active full scan per scope, enforced by the database.
create unique index full_scans_one_active_per_scope on dsx.full_scans (scope_id)
  where status in ('queued', 'running');

create index full_scans_scope_idx on dsx.full_scans (scope_id, id desc);

create table dsx.scan_results (
  id bigint generated always as identity primary key,
  -- Deterministic: 'fs:<full_scan_id>:<identity hash>' for full scans, 'ev:<event id>:<identity hash>' for monitoring.
  idempotency_key text not null unique,
  full_scan_id bigint references dsx.full_scans on delete cascade,
  scope_id bigint not null references dsx.scopes on delete cascade,
  integration_id bigint not null,
  object_identity text not null,
  source_type text not null check (source_type in ('full_scan', 'monitor', 'manual')),
  source_entity_id text not null,
  correlation_id uuid not null,
  root_job_id uuid not null,
  -- job_id of the ScanObjectJob (stable across its retries) and of the FinalizeScanObjectJob that finalized it.
  scan_job_id uuid not null default gen_random_uuid(),
  finalize_job_id uuid,
  requested_by text not null,
  size bigint,
  etag text,
  mtime timestamptz,
  -- pending: a scan job is queued; scanned: its finalize job is queued; finalized: outcome recorded.
  state text not null default 'pending' check (state in ('pending', 'scanned', 'finalized')),
  outcome text check (outcome in ('clean', 'malicious', 'unable_to_scan', 'unsupported_type',
                                  'fetch_failed', 'timeout', 'policy_blocked', 'canceled')),
  reason text,
  raw_reason text,
  raw_result jsonb,
  normalization_version integer,
  attempts integer not null default 0,
  fetch_ms integer,
  scan_ms integer,
  discovered_at timestamptz not null default now(),
  scanned_at timestamptz,
  finalized_at timestamptz,
  constraint scan_results_finalized_consistent
    check ((state = 'finalized') = (outcome is not null and finalized_at is not null))
);

comment on table dsx.scan_results is 'One row per scan job: created pending when the job is enqueued, finalized once with the normalized outcome and the raw DSXA response.';

-- Indexes only on columns that never change after insert, so that marking a row 'scanned' is a HOT
-- update (no index writes; fillfactor leaves room on the page) and finalizing writes no index entry for
-- columns it changes. Per-object index maintenance is what bounds the pipeline on a small machine.
alter table dsx.scan_results set (fillfactor = 70);

create index scan_results_full_scan_idx on dsx.scan_results (full_scan_id);

create index scan_results_scope_idx on dsx.scan_results (scope_id, id);

create table dsx.objects (
  id bigint generated always as identity primary key,
  scope_id bigint not null references dsx.scopes on delete cascade,
  identity text not null,
  identity_hash text not null,
  size bigint,
  etag text,
  mtime timestamptz,
  last_outcome text,
  last_reason text,
  last_scan_result_id bigint,
  last_finalized_at timestamptz,
  first_seen_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint objects_scope_identity_key unique (scope_id, identity_hash)
);

comment on table dsx.objects is 'Latest known state per scope + object identity: reflects the latest finalized scan from any source.';

create table dsx.side_effects (
  id bigint generated always as identity primary key,
  -- 'rem:<scan result key>' or 'notify:<scan result key>:<channel>'.
  idempotency_key text not null unique,
  kind text not null check (kind in ('remediation', 'notification')),
  action text not null check (action in ('tag', 'move', 'delete', 'webhook')),
  scan_result_id bigint not null references dsx.scan_results on delete cascade,
  channel_id bigint references dsx.notification_channels on delete set null,
  outcome text not null,
  status text not null default 'pending'
    check (status in ('pending', 'done', 'already_done', 'not_supported', 'skipped', 'failed')),
  detail text,
  attempts integer not null default 0,
  created_at timestamptz not null default now(),
  executed_at timestamptz
);

comment on table dsx.side_effects is 'Ledger of policy decisions (remediations, notifications), each executed at most once.';

create index side_effects_scan_result_idx on dsx.side_effects (scan_result_id);

create index side_effects_pending_idx on dsx.side_effects (created_at) where status = 'pending';
