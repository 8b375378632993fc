-- Replay protection of the event intake (POST /events/:integrationId). A signed request carries
-- X-DSX-Timestamp (unix seconds) and X-DSX-Signature, the HMAC-SHA256 of "<timestamp>.<body>" keyed
-- with the integration's event secret. The intake accepts a timestamp within DSX_EVENT_MAX_SKEW_S
-- (default 300 s) of now and remembers each accepted signature here until its timestamp is that old,
-- so one signed request is accepted once: by any API server, across restarts. A row is written in the
-- transaction that records the request's events (dsx_private.accept_signed_monitor_events, or
-- dsx_private.remember_event_signature for a request that records none), so a request that failed is
-- not remembered and its retry goes through; later requests prune the expired rows
-- (sql/functions/70_monitoring.sql).
create table dsx_private.event_signatures (
  integration_id bigint not null references dsx.integrations on delete cascade,
  -- The HMAC itself (32 bytes). It travels in clear and names one request; it is not a secret.
  signature bytea not null check (octet_length(signature) = 32),
  signed_at timestamptz not null,
  -- signed_at + the accepting server's window: from then on the timestamp alone refuses a replay.
  expires_at timestamptz not null,
  seen_at timestamptz not null default now(),
  primary key (integration_id, signature)
);

create index event_signatures_expiry_idx on dsx_private.event_signatures (expires_at);
