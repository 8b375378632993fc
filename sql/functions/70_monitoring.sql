-- Repeatable: the one current definition of each function below, with its attributes, grants and
-- smart tags. Applied by `dsx-connect migrate` whenever a file in sql/functions changes (rules in
-- sql/README.md).
--
-- Monitoring: the event intake, ingestion (scope, filters, debounce), the event secrets, and the
-- monitoring switch of a scope.

create or replace function dsx_private.event_secret(p_integration_id bigint) returns text
language sql stable set search_path = pg_catalog, pg_temp as $$
  select s.secret from dsx_private.integration_event_secrets s where s.integration_id = p_integration_id
$$;

-- Creates the integration's event secret when it has none (or replaces it when p_rotate) and returns it.
create or replace function dsx_private.ensure_event_secret(p_integration_id bigint, p_rotate boolean, p_new_secret text)
returns text language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
  v_secret text;
begin
  perform 1 from dsx.integrations i where i.id = p_integration_id;
  if not found then
    perform dsx_private.raise('P0002', format('unknown integration id %s', p_integration_id));
  end if;
  insert into dsx_private.integration_event_secrets as s (integration_id, secret)
  values (p_integration_id, p_new_secret)
  on conflict (integration_id) do update
     set secret = case when p_rotate then excluded.secret else s.secret end,
         created_at = case when p_rotate then now() else s.created_at end
  returning s.secret into v_secret;
  return v_secret;
end $$;

-- The intake: records a batch of events of one integration and enqueues their MonitorEventIngestJob,
-- in one transaction, so that an event the HTTP response calls accepted is durable. Events whose
-- external_id was seen before (a redelivered notification) are counted and skipped.
-- p_events: [{"external_id", "event_type", "container", "object_identity", "etag", "size", "occurred_at"}]
create or replace function dsx.accept_monitor_events(p_integration_id bigint, p_source text, p_events jsonb)
returns jsonb language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
  v_ids bigint[];
  v_total integer;
  v_job_id uuid := gen_random_uuid();
  v_correlation uuid := gen_random_uuid();
begin
  perform 1 from dsx.integrations i where i.id = p_integration_id;
  if not found then
    perform dsx_private.raise('P0002', format('unknown integration id %s', p_integration_id));
  end if;
  if jsonb_typeof(p_events) <> 'array' then
    perform dsx_private.raise('22023', 'events must be a JSON array');
  end if;
  v_total := jsonb_array_length(p_events);
  with ins as (
    insert into dsx.monitor_events as m (integration_id, source, external_id, event_type, container, object_identity,
                                         etag, size, occurred_at)
    select p_integration_id, p_source, e.external_id, e.event_type, e.container, e.object_identity, e.etag, e.size,
           e.occurred_at
      from jsonb_to_recordset(p_events) as e(external_id text, event_type text, container text, object_identity text,
                                               etag text, size bigint, occurred_at timestamptz)
    on conflict (integration_id, dsx_private.identity_hash(external_id)) where external_id is not null do nothing
    returning m.id)
  select coalesce(array_agg(ins.id order by ins.id), '{}') into v_ids from ins;

  if v_total > 0 then
    insert into dsx.integration_event_stats as s (integration_id, events_received, events_duplicate, last_event_at)
    values (p_integration_id, cardinality(v_ids), v_total - cardinality(v_ids), now())
    on conflict (integration_id) do update
       set events_received = s.events_received + excluded.events_received,
           events_duplicate = s.events_duplicate + excluded.events_duplicate,
           last_event_at = now(), updated_at = now();
  end if;
  if cardinality(v_ids) > 0 then
    perform graphile_worker.add_job(
      'monitor-event-ingest',
      dsx_private.job_envelope('monitor-event-ingest', v_job_id, v_correlation, v_job_id, null,
                               'ingest:' || v_ids[1] || '-' || v_ids[cardinality(v_ids)], 'monitor',
                               'events:' || v_ids[1] || '-' || v_ids[cardinality(v_ids)], p_integration_id,
                               null, null, 'monitor',
                               jsonb_build_object('event_ids', to_jsonb(v_ids), 'trailing', false)),
      max_attempts := 10,
      priority := dsx_private.job_priority('monitor-event-ingest'));
  end if;
  return jsonb_build_object('accepted', cardinality(v_ids), 'duplicates', v_total - cardinality(v_ids),
                            'event_ids', to_jsonb(v_ids));
end $$;
comment on function dsx.accept_monitor_events(bigint, text, jsonb) is E'@behavior -*\nEvent intake (POST /events/:integrationId); not part of the GraphQL API.';
revoke execute on function dsx.accept_monitor_events(bigint, text, jsonb) from public;

-- Replay protection of signed intake requests (table dsx_private.event_signatures, migration 0015).
-- Remembers one request's signature until its timestamp is p_window_s old and refuses one seen before
-- (SQLSTATE DX409: the intake answers 409), or whose timestamp is already that old by the database's
-- clock (DX401: 401). Acceptance and retention thus follow one clock, the database's, however far the
-- API servers' clocks drift: an entry is never pruned while its request could still be accepted. A
-- null signature (a request authenticated by the secret itself) does nothing. Each call prunes up to
-- 100 expired entries (it adds one, so the table stays near requests/s x window), skipping those that
-- a concurrent call is pruning instead of waiting for it.
create or replace function dsx_private.remember_event_signature(
  p_integration_id bigint, p_signature bytea, p_signed_at timestamptz, p_window_s integer
) returns void language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
  v_expires timestamptz;
begin
  if p_signature is null then
    return;
  end if;
  perform 1 from dsx.integrations i where i.id = p_integration_id;
  if not found then
    perform dsx_private.raise('P0002', format('unknown integration id %s', p_integration_id));
  end if;
  v_expires := p_signed_at + make_interval(secs => p_window_s);
  if v_expires < now() then
    perform dsx_private.raise('DX401', format(
      'stale request: X-DSX-Timestamp %s is more than %s s old by the database''s clock (DSX_EVENT_MAX_SKEW_S): sign each request when you send it',
      extract(epoch from p_signed_at)::bigint, p_window_s));
  end if;
  delete from dsx_private.event_signatures s
   where s.ctid = any (array(select x.ctid from dsx_private.event_signatures x where x.expires_at < now()
                              order by x.expires_at limit 100 for update skip locked));
  -- A concurrent transaction inserting the same signature makes this wait for its outcome: the
  -- request is accepted by exactly one of them, and again only if that one rolled back.
  insert into dsx_private.event_signatures (integration_id, signature, signed_at, expires_at)
  values (p_integration_id, p_signature, p_signed_at, v_expires)
  on conflict (integration_id, signature) do nothing;
  if not found then
    perform dsx_private.raise('DX409',
      'replayed request: this signed request (the same X-DSX-Timestamp and X-DSX-Signature) was already accepted; nothing was recorded again',
      'Sign every request when you send it; give each event an eventId, so that two identical events within one second are different requests.');
  end if;
end $$;
revoke execute on function dsx_private.remember_event_signature(bigint, bytea, timestamptz, integer) from public;

-- The intake for a signed request: its signature is remembered (or the request refused as a replay)
-- in the transaction that records its events, so that both commit or neither does.
create or replace function dsx_private.accept_signed_monitor_events(
  p_integration_id bigint, p_source text, p_events jsonb, p_signature bytea, p_signed_at timestamptz, p_window_s integer
) returns jsonb language plpgsql set search_path = pg_catalog, pg_temp as $$
begin
  perform dsx_private.remember_event_signature(p_integration_id, p_signature, p_signed_at, p_window_s);
  return dsx.accept_monitor_events(p_integration_id, p_source, p_events);
end $$;
revoke execute on function dsx_private.accept_signed_monitor_events(bigint, text, jsonb, bytea, timestamptz, integer) from public;

create or replace function dsx_private.bump_monitor_stats(
  p_scope_id bigint, p_received integer, p_scanned integer, p_coalesced integer,
  p_deleted integer, p_excluded integer, p_disabled integer, p_unchanged integer default 0
) returns void language sql set search_path = pg_catalog, pg_temp as $$
  insert into dsx.monitor_stats as s (scope_id, events_received, events_scanned, events_coalesced,
                                      ignored_deleted, ignored_excluded, ignored_disabled, ignored_unchanged, last_event_at)
  values (p_scope_id, p_received, p_scanned, p_coalesced, p_deleted, p_excluded, p_disabled, p_unchanged,
          case when p_received > 0 then now() end)
  on conflict (scope_id) do update
     set events_received = s.events_received + p_received,
         events_scanned = s.events_scanned + p_scanned,
         events_coalesced = s.events_coalesced + p_coalesced,
         ignored_deleted = s.ignored_deleted + p_deleted,
         ignored_excluded = s.ignored_excluded + p_excluded,
         ignored_disabled = s.ignored_disabled + p_disabled,
         ignored_unchanged = s.ignored_unchanged + p_unchanged,
         last_event_at = coalesce(excluded.last_event_at, s.last_event_at),
         updated_at = now();
$$;

-- MonitorEventIngestJob: applies the decisions the task made for each event (its scope, and whether
-- the scope's state and filters let it be scanned). Safe to run twice: only events still 'received'
-- (or, for a trailing job, still 'deferred') are processed, under a row lock.
--
-- Debouncing, per scope + object: the first event scans at once (leading edge). Events arriving within
-- p_debounce_ms of that scan are deferred: one trailing MonitorEventIngestJob (job_key per object,
-- run_at = last scan + window, its payload replaced by the newest event) scans the object once more
-- when the window ends, so the last version is always scanned. A deferred event replaced by a newer
-- one ends 'coalesced'.
-- p_decisions: [{"event_id", "scope_id", "action": "scan" | "ignore", "reason"}]
create or replace function dsx_private.ingest_monitor_events(
  p_decisions jsonb, p_trailing boolean, p_job_id uuid, p_debounce_ms integer, p_scan_max_attempts integer
) returns jsonb language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
  d record;
  e dsx.monitor_events;
  db dsx_private.monitor_debounce;
  v_scope dsx.scopes;
  v_hash text;
  v_has_db boolean;
  v_key text;
  v_result_id bigint;
  v_window interval := make_interval(secs => p_debounce_ms / 1000.0);
  v_scanned integer := 0;
  v_deferred integer := 0;
  v_ignored integer := 0;
begin
  for d in
    select x.* from jsonb_to_recordset(p_decisions) as x(event_id bigint, scope_id bigint, action text, reason text)
     order by x.event_id
  loop
    select * into e from dsx.monitor_events m where m.id = d.event_id for update;
    if not found or e.status <> (case when p_trailing then 'deferred' else 'received' end) then
      continue;
    end if;

    if d.action = 'ignore' or d.scope_id is null then
      update dsx.monitor_events m
         set status = 'ignored', reason = coalesce(d.reason, 'no_scope'), scope_id = d.scope_id, processed_at = now()
       where m.id = e.id;
      if p_trailing then
        -- A deferred event that no longer qualifies (scope disabled, filters changed) ends here.
        update dsx_private.monitor_debounce b set deferred_event_id = null
         where b.scope_id = e.scope_id and b.deferred_event_id = e.id;
      end if;
      if d.scope_id is null then
        update dsx.integration_event_stats s set events_unscoped = s.events_unscoped + 1, updated_at = now()
         where s.integration_id = e.integration_id;
      else
        perform dsx_private.bump_monitor_stats(d.scope_id, case when p_trailing then 0 else 1 end, 0, 0,
          (d.reason = 'deleted')::integer, (d.reason = 'excluded')::integer,
          (d.reason in ('scope_disabled', 'monitoring_off'))::integer);
      end if;
      v_ignored := v_ignored + 1;
      continue;
    end if;

    select * into v_scope from dsx.scopes s where s.id = d.scope_id;
    if not found then
      continue; -- the scope was deleted since the task looked: the event stays for the next delivery
    end if;
    v_hash := dsx_private.identity_hash(e.object_identity);
    -- Concurrent ingest jobs of one object serialize here, including before its debounce row exists.
    perform pg_advisory_xact_lock(hashtextextended('dsx.monitor:' || v_scope.id || ':' || v_hash, 0));

    -- The version the event names was scanned already (the etag of the object's latest finalized
    -- result, quoted or not): storage services deliver at least once, and one write can yield several
    -- notifications. An event for an older version still scans (the scan reads, and records, the
    -- current one), so the current version is scanned once and its own event then finds it unchanged.
    if not p_trailing and e.etag is not null and exists (
         select 1 from dsx.objects o
          where o.scope_id = v_scope.id and o.identity_hash = v_hash and btrim(o.etag, '"') = btrim(e.etag, '"')) then
      update dsx.monitor_events m
         set status = 'ignored', reason = 'unchanged', scope_id = v_scope.id, processed_at = now()
       where m.id = e.id;
      perform dsx_private.bump_monitor_stats(v_scope.id, 1, 0, 0, 0, 0, 0, 1);
      v_ignored := v_ignored + 1;
      continue;
    end if;
    select * into db from dsx_private.monitor_debounce b
     where b.scope_id = v_scope.id and b.identity_hash = v_hash for update;
    v_has_db := found;
    -- This event takes the place of an earlier one still waiting for the trailing scan: whether it is
    -- scanned now (the window is over; that trailing job then finds its event coalesced and does
    -- nothing) or deferred in turn.
    if v_has_db and db.deferred_event_id is not null and db.deferred_event_id <> e.id then
      update dsx.monitor_events m set status = 'coalesced', reason = 'superseded', processed_at = now()
       where m.id = db.deferred_event_id and m.status = 'deferred';
      if found then
        perform dsx_private.bump_monitor_stats(v_scope.id, 0, 0, 1, 0, 0, 0);
      end if;
    end if;

    if p_trailing or not v_has_db or db.last_scan_at <= now() - v_window then
      v_key := 'ev:' || e.id || ':' || v_hash;
      -- In the monitor lane ('monitor-scan-object'): no runner there holds full-scan jobs. A repeat of
      -- this job admits nothing and finds the result row of its first run.
      select a.result_id into v_result_id
        from dsx_private.admit_objects(
          jsonb_build_array(jsonb_build_object('identity', e.object_identity, 'size', e.size, 'etag', e.etag)),
          'ev:' || e.id || ':', 'monitor', e.id::text, null, v_scope.id, v_scope.integration_id, e.correlation_id,
          p_job_id, p_job_id, 'monitor', p_scan_max_attempts) a;
      if v_result_id is null then
        select r.id into v_result_id from dsx.scan_results r where r.idempotency_key = v_key;
      end if;
      insert into dsx_private.monitor_debounce as b (scope_id, identity_hash, last_scan_at, deferred_event_id)
      values (v_scope.id, v_hash, now(), null)
      on conflict (scope_id, identity_hash) do update set last_scan_at = now(), deferred_event_id = null;
      update dsx.monitor_events m
         set status = 'scanned', scope_id = v_scope.id, scan_result_id = v_result_id, processed_at = now()
       where m.id = e.id;
      perform dsx_private.bump_monitor_stats(v_scope.id, case when p_trailing then 0 else 1 end, 1, 0, 0, 0, 0);
      v_scanned := v_scanned + 1;
    else
      -- Within the window of the last scan: defer to the trailing scan.
      update dsx_private.monitor_debounce b set deferred_event_id = e.id
       where b.scope_id = v_scope.id and b.identity_hash = v_hash;
      update dsx.monitor_events m set status = 'deferred', scope_id = v_scope.id where m.id = e.id;
      perform dsx_private.bump_monitor_stats(v_scope.id, 1, 0, 0, 0, 0, 0);
      perform graphile_worker.add_job(
        'monitor-event-ingest',
        dsx_private.job_envelope('monitor-event-ingest', gen_random_uuid(), e.correlation_id, p_job_id, p_job_id,
                                 'trailing:' || e.id, 'monitor', e.id::text, e.integration_id, v_scope.id,
                                 e.object_identity, 'monitor',
                                 jsonb_build_object('event_ids', jsonb_build_array(e.id), 'trailing', true)),
        run_at := db.last_scan_at + v_window,
        job_key := 'monitor-trailing:' || v_scope.id || ':' || v_hash,
        job_key_mode := 'preserve_run_at',
        max_attempts := 10,
        priority := dsx_private.job_priority('monitor-event-ingest'));
      v_deferred := v_deferred + 1;
    end if;
  end loop;
  return jsonb_build_object('scanned', v_scanned, 'deferred', v_deferred, 'ignored', v_ignored);
end $$;

-- What the ingest task needs to decide: the events of a job (with their integration's scopes read
-- separately), only those still waiting.
create or replace function dsx_private.monitor_events_pending(p_ids bigint[], p_trailing boolean)
returns setof dsx.monitor_events language sql stable set search_path = pg_catalog, pg_temp as $$
  select * from dsx.monitor_events m
   where m.id = any(p_ids) and m.status = (case when p_trailing then 'deferred' else 'received' end)
   order by m.id
$$;

-- Turns monitoring on or off for a scope (CLI, psql, GraphQL). Like the other operator functions it
-- reaches into dsx_private (errors, audit), so it runs with its owner's rights.
create or replace function dsx.set_scope_monitor(p_scope_id bigint, p_monitor boolean) returns dsx.scopes
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_scope dsx.scopes;
begin
  if p_monitor is null then
    perform dsx_private.raise('22023', 'monitor must be true or false');
  end if;
  update dsx.scopes s set monitor = p_monitor where s.id = p_scope_id returning * into v_scope;
  if not found then
    perform dsx_private.raise('P0002', format('unknown scope id %s', p_scope_id), 'List scopes with: dsx-connect scope list');
  end if;
  return v_scope;
end $$;
comment on function dsx.set_scope_monitor(bigint, boolean) is E'@resultFieldName scope\nTurns monitoring on or off for a scope.';
revoke execute on function dsx.set_scope_monitor(bigint, boolean) from public;
grant execute on function dsx.set_scope_monitor(bigint, boolean) to dsx_operator;
