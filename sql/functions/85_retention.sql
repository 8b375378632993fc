-- Repeatable: the one current definition of each function below, with its attributes, grants and
-- smart tags. Applied by `dsx-connect migrate` whenever a file in sql/functions changes (rules in
-- sql/README.md).
--
-- Retention: results, monitor events, debounce state, replay signatures, audit entries and failed jobs
-- older than their retention are deleted by the sweep (tasks/retention-sweep.ts), in chunks. Each
-- function below deletes at most p_limit rows of one table, oldest first, in the caller's (short)
-- transaction, skipping rows another transaction holds (`for update skip locked`): a running finalize,
-- claim or ingest is never waited on, and what it holds is left for the next sweep. Each returns how
-- many rows it deleted and whether the table is done for this sweep (`finished`); the sweep calls it
-- again until it is, or its time budget is spent. dsx.objects (latest state per object) and
-- dsx.full_scans (the scans' summaries) are never deleted. Nothing here is granted to the API roles.
--
-- Tables with rows that must stay however old they are (the latest result of each object, results of
-- running scans, events not handled yet) are walked along their primary key from a cursor
-- (dsx_private.retention_state): a chunk is the next p_limit ids, an index range that never reads the
-- kept rows twice in one walk. Ids grow with the rows' creation time, so the walk ends at the first
-- row created after the cutoff, and the next sweep walks again from the start, where rows kept last
-- time may have become deletable since (an object scanned again, a scan finished).

-- The oldest instant that is kept: now minus the retention, at least a day.
create or replace function dsx_private.retention_cutoff(p_days integer) returns timestamptz
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
begin
  if p_days is null or p_days < 1 then
    perform dsx_private.raise('22023', format('a retention must be 1 day or more (got %s); 0, keep forever, means: do not sweep', p_days));
  end if;
  return now() - make_interval(days => p_days);
end $$;
revoke execute on function dsx_private.retention_cutoff(integer) from public;

create or replace function dsx_private.retention_check_limit(p_limit integer) returns void
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
begin
  if p_limit is null or p_limit < 1 or p_limit > 100000 then
    perform dsx_private.raise('22023', format('a chunk is 1 to 100000 rows (got %s)', p_limit));
  end if;
end $$;
revoke execute on function dsx_private.retention_check_limit(integer) from public;

-- Where the walk of p_table goes on, locked until the chunk commits (two sweeps never walk one table
-- at once; the sweep also holds an advisory lock, so this never waits in practice).
create or replace function dsx_private.retention_cursor_take(p_table text) returns bigint
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
  v_after bigint;
begin
  insert into dsx_private.retention_state (table_name) values (p_table) on conflict (table_name) do nothing;
  select s.after_id into v_after from dsx_private.retention_state s where s.table_name = p_table for update;
  return v_after;
end $$;
revoke execute on function dsx_private.retention_cursor_take(text) from public;

create or replace function dsx_private.retention_cursor_put(p_table text, p_after bigint) returns void
language sql set search_path = pg_catalog, pg_temp as $$
  update dsx_private.retention_state set after_id = p_after, updated_at = now() where table_name = p_table;
$$;
revoke execute on function dsx_private.retention_cursor_put(text, bigint) from public;

-- Whether a finalized result must stay whatever its age: dsx.objects points to it as the object's
-- latest result, its full scan is still running (finished_at null: also a canceled scan still draining),
-- or one of its side effects is still to execute (pending, or executing under a claim). Each of these
-- only ever turns false (an object's pointer moves to newer results only; a scan finishes once; a side
-- effect leaves pending/executing for good), so a row found deletable stays deletable.
create or replace function dsx_private.retention_result_kept(p_id bigint, p_scope_id bigint, p_identity text, p_full_scan_id bigint)
returns boolean language sql stable set search_path = pg_catalog, pg_temp as $$
  select exists (select 1 from dsx.objects o
                  where o.scope_id = p_scope_id and o.identity_hash = dsx_private.identity_hash(p_identity)
                    and o.last_scan_result_id = p_id)
      or exists (select 1 from dsx.full_scans f where f.id = p_full_scan_id and f.finished_at is null)
      or exists (select 1 from dsx.side_effects e where e.scan_result_id = p_id and e.status in ('pending', 'executing'))
$$;
revoke execute on function dsx_private.retention_result_kept(bigint, bigint, text, bigint) from public;

-- dsx.scan_results finalized more than p_days ago and not kept (above), with their side effects (all
-- executed). A result whose side effect or monitor event another transaction holds stays for the next
-- sweep, so that neither delete (nor the foreign key's "set null" on monitor_events) waits on it.
create or replace function dsx_private.retention_sweep_scan_results(p_days integer, p_limit integer)
returns table (deleted integer, side_effects_deleted integer, finished boolean)
language plpgsql set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_cutoff timestamptz := dsx_private.retention_cutoff(p_days);
  v_after bigint;
  v_seen integer;
  v_last bigint;
  v_young boolean;
  v_old bigint[];
  v_ids bigint[];
  v_effects bigint[];
  v_events bigint[];
  v_blocked bigint[];
begin
  perform dsx_private.retention_check_limit(p_limit);
  v_after := dsx_private.retention_cursor_take('scan_results');
  -- The next p_limit rows of the primary key. A result is finalized after it is discovered, so a row
  -- discovered after the cutoff ends the walk: every later id is younger.
  select count(*)::integer, max(c.id), coalesce(bool_or(c.discovered_at >= v_cutoff), false),
         coalesce(array_agg(c.id) filter (where c.state = 'finalized' and c.finalized_at < v_cutoff), '{}')
    into v_seen, v_last, v_young, v_old
    from (select r.id, r.state, r.finalized_at, r.discovered_at
            from dsx.scan_results r where r.id > v_after order by r.id limit p_limit) c;
  v_ids := array(select r.id from dsx.scan_results r
                  where r.id = any(v_old) and r.state = 'finalized'
                    and not dsx_private.retention_result_kept(r.id, r.scope_id, r.object_identity, r.full_scan_id)
                  order by r.id
                    for update of r skip locked);
  v_effects := array(select e.id from dsx.side_effects e where e.scan_result_id = any(v_ids) for update skip locked);
  v_events := array(select m.id from dsx.monitor_events m where m.scan_result_id = any(v_ids) for update skip locked);
  v_blocked := array(select e.scan_result_id from dsx.side_effects e where e.scan_result_id = any(v_ids) and e.id <> all(v_effects)
                     union
                     select m.scan_result_id from dsx.monitor_events m where m.scan_result_id = any(v_ids) and m.id <> all(v_events));
  delete from dsx.side_effects e where e.id = any(v_effects) and e.scan_result_id <> all(v_blocked);
  get diagnostics side_effects_deleted = row_count;
  -- Each scan keeps count of its results removed (the invariant checker adds them back).
  with del as (
    delete from dsx.scan_results r where r.id = any(v_ids) and r.id <> all(v_blocked)
    returning r.full_scan_id
  ), per_scan as (
    update dsx.full_scans f set results_removed = f.results_removed + d.n
      from (select full_scan_id, count(*) as n from del where full_scan_id is not null group by 1) d
     where f.id = d.full_scan_id
    returning 1
  )
  select count(*)::integer into deleted from del;
  finished := v_young or v_seen < p_limit;
  perform dsx_private.retention_cursor_put('scan_results', case when finished then 0 else v_last end);
  return next;
end $$;
revoke execute on function dsx_private.retention_sweep_scan_results(integer, integer) from public;

-- dsx.monitor_events handled (scanned, coalesced, ignored) and received more than p_days ago. Events
-- still received or deferred stay, whatever their age: they are work not done yet.
create or replace function dsx_private.retention_sweep_monitor_events(p_days integer, p_limit integer)
returns table (deleted integer, finished boolean)
language plpgsql set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_cutoff timestamptz := dsx_private.retention_cutoff(p_days);
  v_after bigint;
  v_seen integer;
  v_last bigint;
  v_young boolean;
  v_old bigint[];
begin
  perform dsx_private.retention_check_limit(p_limit);
  v_after := dsx_private.retention_cursor_take('monitor_events');
  select count(*)::integer, max(c.id), coalesce(bool_or(c.received_at >= v_cutoff), false),
         coalesce(array_agg(c.id) filter (where c.status in ('scanned', 'coalesced', 'ignored') and c.received_at < v_cutoff), '{}')
    into v_seen, v_last, v_young, v_old
    from (select m.id, m.status, m.received_at
            from dsx.monitor_events m where m.id > v_after order by m.id limit p_limit) c;
  delete from dsx.monitor_events m
   where m.id = any(array(select x.id from dsx.monitor_events x
                           where x.id = any(v_old) and x.status in ('scanned', 'coalesced', 'ignored')
                           order by x.id
                             for update skip locked));
  get diagnostics deleted = row_count;
  finished := v_young or v_seen < p_limit;
  perform dsx_private.retention_cursor_put('monitor_events', case when finished then 0 else v_last end);
  return next;
end $$;
revoke execute on function dsx_private.retention_sweep_monitor_events(integer, integer) from public;

-- dsx_private.monitor_debounce entries whose object was last scanned more than p_days ago and that
-- wait for no trailing scan. Debouncing needs an entry for DSX_MONITOR_DEBOUNCE_MS only: an object
-- without one is scanned at once, as it would be after its window.
create or replace function dsx_private.retention_sweep_monitor_debounce(p_days integer, p_limit integer)
returns table (deleted integer, finished boolean)
language plpgsql set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_cutoff timestamptz := dsx_private.retention_cutoff(p_days);
begin
  perform dsx_private.retention_check_limit(p_limit);
  delete from dsx_private.monitor_debounce b
   where b.ctid = any(array(select x.ctid from dsx_private.monitor_debounce x
                             where x.last_scan_at < v_cutoff and x.deferred_event_id is null
                             order by x.last_scan_at limit p_limit
                               for update skip locked));
  get diagnostics deleted = row_count;
  finished := deleted < p_limit;
  return next;
end $$;
revoke execute on function dsx_private.retention_sweep_monitor_debounce(integer, integer) from public;

-- dsx_private.event_signatures past their replay window (a request that old is refused as stale, so its
-- signature guards nothing). The intake prunes up to 100 of them per signed request; this removes the
-- rest when requests stop coming.
create or replace function dsx_private.retention_sweep_event_signatures(p_limit integer)
returns table (deleted integer, finished boolean)
language plpgsql set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
begin
  perform dsx_private.retention_check_limit(p_limit);
  delete from dsx_private.event_signatures s
   where s.ctid = any(array(select x.ctid from dsx_private.event_signatures x where x.expires_at < now()
                             order by x.expires_at limit p_limit
                               for update skip locked));
  get diagnostics deleted = row_count;
  finished := deleted < p_limit;
  return next;
end $$;
revoke execute on function dsx_private.retention_sweep_event_signatures(integer) from public;

-- dsx.audit_log entries older than p_days. The log is append-only (tg_audit_log_append_only): this
-- function, and only it, sets the transaction-local floor under which that trigger lets a DELETE
-- through, around its own DELETE. Security definer, so that it works the same whoever is allowed to
-- call it; nobody but the owner is.
create or replace function dsx_private.retention_sweep_audit_log(p_days integer, p_limit integer)
returns table (deleted integer, finished boolean)
language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  -- UTC ISO 8601 with microseconds: read back exactly by the trigger, whatever DateStyle or TimeZone.
  v_floor text := to_char(dsx_private.retention_cutoff(p_days) at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
  v_cutoff timestamptz := v_floor::timestamptz;
  v_after bigint;
  v_seen integer;
  v_last bigint;
  v_young boolean;
  v_old bigint[];
begin
  perform dsx_private.retention_check_limit(p_limit);
  v_after := dsx_private.retention_cursor_take('audit_log');
  select count(*)::integer, max(c.id), coalesce(bool_or(c.at >= v_cutoff), false),
         coalesce(array_agg(c.id) filter (where c.at < v_cutoff), '{}')
    into v_seen, v_last, v_young, v_old
    from (select a.id, a.at from dsx.audit_log a where a.id > v_after order by a.id limit p_limit) c;
  perform set_config('dsx.audit_retention_floor', v_floor, true);
  delete from dsx.audit_log a
   where a.id = any(array(select x.id from dsx.audit_log x where x.id = any(v_old) order by x.id for update skip locked));
  get diagnostics deleted = row_count;
  perform set_config('dsx.audit_retention_floor', '', true);
  finished := v_young or v_seen < p_limit;
  perform dsx_private.retention_cursor_put('audit_log', case when finished then 0 else v_last end);
  return next;
end $$;
revoke execute on function dsx_private.retention_sweep_audit_log(integer, integer) from public;

-- graphile-worker jobs that failed for good (attempts used up) and are not locked, whose last failure
-- is more than p_days ago: a failure moves run_at past the moment it failed (by e^attempts seconds, at
-- most ~6 hours), so run_at before the cutoff means failed before it. Removed through graphile-worker's
-- own complete_jobs. No index covers these rows (graphile-worker's indexes hold available jobs only),
-- so a chunk reads the job table; jobs should never fail for good here (every task handles its last
-- attempt), so one chunk per sweep is the rule.
create or replace function dsx_private.retention_sweep_failed_jobs(p_days integer, p_limit integer)
returns table (deleted integer, finished boolean)
language plpgsql set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_cutoff timestamptz := dsx_private.retention_cutoff(p_days);
  v_ids bigint[];
begin
  perform dsx_private.retention_check_limit(p_limit);
  v_ids := array(select j.id from graphile_worker._private_jobs j
                  where j.attempts >= j.max_attempts and j.locked_at is null and j.run_at < v_cutoff
                  limit p_limit
                    for update skip locked);
  select count(*)::integer into deleted from graphile_worker.complete_jobs(v_ids);
  finished := cardinality(v_ids) < p_limit;
  return next;
end $$;
revoke execute on function dsx_private.retention_sweep_failed_jobs(integer, integer) from public;

-- dsx.skipped_entries of full scans that finished more than p_days ago (the results' retention: the
-- scan's counts per reason stay on dsx.full_scans).
create or replace function dsx_private.retention_sweep_skipped_entries(p_days integer, p_limit integer)
returns table (deleted integer, finished boolean)
language plpgsql set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_cutoff timestamptz := dsx_private.retention_cutoff(p_days);
begin
  perform dsx_private.retention_check_limit(p_limit);
  delete from dsx.skipped_entries e
   where e.id = any(array(select x.id from dsx.skipped_entries x
                           where x.full_scan_id in (select f.id from dsx.full_scans f where f.finished_at < v_cutoff)
                           order by x.id limit p_limit
                             for update skip locked));
  get diagnostics deleted = row_count;
  finished := deleted < p_limit;
  return next;
end $$;
revoke execute on function dsx_private.retention_sweep_skipped_entries(integer, integer) from public;

-- dsx.invalid_jobs recorded more than p_days ago.
create or replace function dsx_private.retention_sweep_invalid_jobs(p_days integer, p_limit integer)
returns table (deleted integer, finished boolean)
language plpgsql set search_path = pg_catalog, pg_temp as $$
#variable_conflict use_column
declare
  v_cutoff timestamptz := dsx_private.retention_cutoff(p_days);
begin
  perform dsx_private.retention_check_limit(p_limit);
  delete from dsx.invalid_jobs i
   where i.id = any(array(select x.id from dsx.invalid_jobs x where x.recorded_at < v_cutoff
                           order by x.recorded_at limit p_limit
                             for update skip locked));
  get diagnostics deleted = row_count;
  finished := deleted < p_limit;
  return next;
end $$;
revoke execute on function dsx_private.retention_sweep_invalid_jobs(integer, integer) from public;

-- One sweep done: each table's count is kept (dsx-connect retention shows it) and one audit entry,
-- retention.swept, records them all. p_detail: {"deleted": {"<table>": n, ...}, ...anything else}.
create or replace function dsx_private.record_retention_sweep(p_actor text, p_detail jsonb) returns void
language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
  v_audit_id bigint;
begin
  if jsonb_typeof(p_detail -> 'deleted') is distinct from 'object' then
    perform dsx_private.raise('22023', 'a sweep record needs "deleted": {"<table>": count, ...}');
  end if;
  insert into dsx.audit_log (actor, action, detail)
  values (coalesce(p_actor, dsx_private.actor()), 'retention.swept', p_detail)
  returning id into v_audit_id;
  insert into dsx_private.retention_state as s (table_name, last_deleted, last_swept_at, last_audit_id)
  select d.key, d.value::bigint, now(), v_audit_id from jsonb_each_text(p_detail -> 'deleted') d
  on conflict (table_name) do update
     set last_deleted = excluded.last_deleted, last_swept_at = excluded.last_swept_at, last_audit_id = excluded.last_audit_id;
end $$;
revoke execute on function dsx_private.record_retention_sweep(text, jsonb) from public;

-- What a sweep would delete now, per table, with the same rules as the chunks (a days value of 0, keep
-- forever, gives null). Reads whole tables where no index covers the rule (results, events, audit):
-- an operator's question (dsx-connect retention), not something to run on a schedule.
create or replace function dsx_private.retention_eligible(p_results_days integer, p_events_days integer, p_audit_days integer, p_jobs_days integer)
returns table (table_name text, eligible bigint, last_deleted bigint, last_swept_at timestamptz)
language plpgsql stable set search_path = pg_catalog, pg_temp as $$
declare
  v_results timestamptz := case when p_results_days > 0 then dsx_private.retention_cutoff(p_results_days) end;
  v_events timestamptz := case when p_events_days > 0 then dsx_private.retention_cutoff(p_events_days) end;
  v_audit timestamptz := case when p_audit_days > 0 then dsx_private.retention_cutoff(p_audit_days) end;
  v_jobs timestamptz := case when p_jobs_days > 0 then dsx_private.retention_cutoff(p_jobs_days) end;
begin
  return query
  with deletable_results as (
    select r.id from dsx.scan_results r
     where v_results is not null and r.state = 'finalized' and r.finalized_at < v_results
       and not dsx_private.retention_result_kept(r.id, r.scope_id, r.object_identity, r.full_scan_id)
  ), counts(table_name, eligible) as (
    select 'scan_results', case when v_results is not null then (select count(*) from deletable_results) end
    union all
    select 'side_effects', case when v_results is not null then
      (select count(*) from dsx.side_effects e where e.scan_result_id in (select id from deletable_results)) end
    union all
    select 'skipped_entries', case when v_results is not null then
      (select count(*) from dsx.skipped_entries x
        where x.full_scan_id in (select f.id from dsx.full_scans f where f.finished_at < v_results)) end
    union all
    select 'monitor_events', case when v_events is not null then
      (select count(*) from dsx.monitor_events m where m.status in ('scanned', 'coalesced', 'ignored') and m.received_at < v_events) end
    union all
    select 'monitor_debounce', case when v_events is not null then
      (select count(*) from dsx_private.monitor_debounce b where b.last_scan_at < v_events and b.deferred_event_id is null) end
    union all
    select 'event_signatures', (select count(*) from dsx_private.event_signatures s where s.expires_at < now())
    union all
    select 'audit_log', case when v_audit is not null then (select count(*) from dsx.audit_log a where a.at < v_audit) end
    union all
    select 'failed_jobs', case when v_jobs is not null then
      (select count(*) from graphile_worker._private_jobs j
        where j.attempts >= j.max_attempts and j.locked_at is null and j.run_at < v_jobs) end
    union all
    select 'invalid_jobs', case when v_jobs is not null then (select count(*) from dsx.invalid_jobs i where i.recorded_at < v_jobs) end
  )
  select c.table_name, c.eligible, s.last_deleted, s.last_swept_at
    from counts c left join dsx_private.retention_state s on s.table_name = c.table_name;
end $$;
revoke execute on function dsx_private.retention_eligible(integer, integer, integer, integer) from public;
