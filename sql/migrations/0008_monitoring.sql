-- Monitoring: storage events (HTTP intake, the filesystem watcher) become durable dsx.monitor_events
-- rows and a MonitorEventIngestJob in one transaction; the ingest job resolves each event's scope,
-- applies its filters, debounces bursts, and enqueues the same ScanObjectJob -> finalize path a full
-- scan uses (source_type 'monitor', source_entity_id = the event id, ahead of full-scan work). The
-- functions are in sql/functions/70_monitoring.sql, the view dsx.monitor_overview in 90_views.sql.

-- Per-integration shared secret of the event intake (POST /events/:integrationId). Stored readable
-- because HMAC verification needs the key itself; lives in dsx_private like every other secret.
create table dsx_private.integration_event_secrets (
  integration_id bigint primary key references dsx.integrations on delete cascade,
  secret text not null check (length(secret) >= 16),
  created_at timestamptz not null default now()
);

create table dsx.monitor_events (
  id bigint generated always as identity primary key,
  integration_id bigint not null references dsx.integrations on delete cascade,
  -- How it arrived: an S3 notification (plain, in an SNS envelope, or from EventBridge), an Azure
  -- Event Grid event, the documented generic form, or the filesystem watcher.
  source text not null check (source in ('s3', 'sns', 'eventbridge', 'eventgrid', 'generic', 'watch')),
  -- The sender's id for the event (S3 sequencer, Event Grid id, generic eventId): a redelivered
  -- notification is recognized and not ingested twice.
  external_id text,
  event_type text not null check (event_type in ('created', 'modified', 'deleted')),
  -- Bucket or container named by the event, checked against the integration's settings.
  container text,
  object_identity text not null,
  etag text,
  size bigint,
  occurred_at timestamptz,
  correlation_id uuid not null default gen_random_uuid(),
  received_at timestamptz not null default now(),
  -- received: waiting for its ingest job; deferred: folded into a trailing scan that has not run yet;
  -- scanned: a ScanObjectJob was enqueued for it; coalesced: a later event of the same object took its
  -- place; ignored: not scanned, see reason.
  status text not null default 'received'
    check (status in ('received', 'deferred', 'scanned', 'coalesced', 'ignored')),
  reason text check (reason in ('no_scope', 'other_container', 'scope_disabled', 'monitoring_off', 'excluded',
                                'deleted', 'superseded')),
  scope_id bigint references dsx.scopes on delete set null,
  scan_result_id bigint references dsx.scan_results on delete set null,
  processed_at timestamptz,
  constraint monitor_events_reason_consistent check ((reason is null) = (status in ('received', 'deferred', 'scanned')))
);

comment on table dsx.monitor_events is E'@behavior -insert -update -delete\nOne storage event as received (HTTP intake or filesystem watcher), with what monitoring did with it.';

create unique index monitor_events_external_key
  on dsx.monitor_events (integration_id, dsx_private.identity_hash(external_id)) where external_id is not null;

create index monitor_events_scope_idx on dsx.monitor_events (scope_id, id);

create index monitor_events_integration_idx on dsx.monitor_events (integration_id, id);

-- Counters per scope, updated by the ingest transactions. Invariant once nothing is in flight:
-- events_received = events_scanned + events_coalesced + the ignored_* counters.
create table dsx.monitor_stats (
  scope_id bigint primary key references dsx.scopes on delete cascade,
  events_received bigint not null default 0,
  events_scanned bigint not null default 0,
  events_coalesced bigint not null default 0,
  ignored_deleted bigint not null default 0,
  ignored_excluded bigint not null default 0,
  ignored_disabled bigint not null default 0,
  last_event_at timestamptz,
  updated_at timestamptz not null default now()
);

comment on table dsx.monitor_stats is E'@behavior -insert -update -delete\nMonitoring counters per scope: events received, scanned, coalesced by debouncing, and ignored by reason.';

comment on column dsx.monitor_stats.ignored_disabled is 'Events for a scope that is disabled or has monitoring off.';

-- Counters per integration: events accepted by the intake, and events no scope owns.
create table dsx.integration_event_stats (
  integration_id bigint primary key references dsx.integrations on delete cascade,
  events_received bigint not null default 0,
  events_duplicate bigint not null default 0,
  events_unscoped bigint not null default 0,
  last_event_at timestamptz,
  updated_at timestamptz not null default now()
);

comment on table dsx.integration_event_stats is E'@behavior -insert -update -delete\nEvent intake counters per integration: accepted, redelivered duplicates, and events outside every scope.';

-- Debounce state per monitored object: when its last monitoring scan was enqueued, and the event
-- waiting for the trailing scan, if any.
create table dsx_private.monitor_debounce (
  scope_id bigint not null references dsx.scopes on delete cascade,
  identity_hash text not null,
  last_scan_at timestamptz not null,
  deferred_event_id bigint,
  primary key (scope_id, identity_hash)
);

-- Access for the GraphQL roles (0007): viewers read.
grant select on dsx.monitor_events, dsx.monitor_stats, dsx.integration_event_stats to dsx_viewer;

comment on column dsx.monitor_events.status is E'@behavior +attribute:filterBy';

comment on column dsx.monitor_events.scope_id is E'@behavior +attribute:filterBy';
