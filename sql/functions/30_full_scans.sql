-- Repeatable: the one current definition of each function below, with its attributes, grants and
-- smart tags. Applied by `dsx-connect migrate` whenever a file in sql/functions changes (rules in
-- sql/README.md).
--
-- Full scans: start and cancel (operator entry points), the enumeration-side transitions, completion,
-- and the progress NOTIFYs. Each function changes state and enqueues the jobs that follow from it in the
-- same transaction (graphile_worker.add_job/add_jobs on the caller's connection), so a state change and
-- its jobs commit or roll back together.

-- Completion is decided here, inside the transactions that finalize objects or exhaust enumeration:
-- a running scan completes exactly when enumeration is exhausted and finalized = discovered; a
-- canceled or failed scan is finished once the objects it had already queued are finalized (a failed
-- scan is not "finished" while its queued objects are still being scanned).
create or replace function dsx_private.complete_if_done(p_ids bigint[]) returns void language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
  r record;
begin
  for r in
    update dsx.full_scans f
       set status = 'completed', finished_at = now(), updated_at = now()
     where f.id = any(p_ids) and f.status = 'running' and f.enumeration_exhausted and f.finalized = f.discovered
    returning f.id, f.scope_id, f.correlation_id, f.discovered
  loop
    perform dsx_private.audit('dsx-connect', 'full_scan.completed', r.scope_id, r.id, r.correlation_id,
                              jsonb_build_object('discovered', r.discovered));
    perform dsx_private.notify_full_scan(r.id, 'completed');
  end loop;
  -- A canceled or failed scan finishes once the objects it had already queued are finalized.
  for r in
    update dsx.full_scans f
       set finished_at = now(), updated_at = now()
     where f.id = any(p_ids) and f.status in ('canceled', 'failed') and f.finished_at is null
       and f.finalized = f.discovered
    returning f.id, f.scope_id, f.correlation_id, f.finalized, f.status
  loop
    perform dsx_private.audit('dsx-connect', 'full_scan.drained', r.scope_id, r.id, r.correlation_id,
                              jsonb_build_object('finalized', r.finalized));
    perform dsx_private.notify_full_scan(r.id, r.status);
  end loop;
end $$;

-- Starts a full scan of a scope, or returns the active one (and enqueues nothing).
create or replace function dsx.start_full_scan(p_scope_id bigint, p_requested_by text default null)
returns dsx.start_full_scan_result language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_scope dsx.scopes;
  v_scan dsx.full_scans;
  v_result dsx.start_full_scan_result;
begin
  -- Row lock on the scope serializes concurrent starts of the same scope.
  select * into v_scope from dsx.scopes s where s.id = p_scope_id for update;
  if not found then
    perform dsx_private.raise('P0002', format('unknown scope id %s', p_scope_id), 'List scopes with: dsx-connect scope list');
  end if;
  if not v_scope.enabled then
    perform dsx_private.raise('55000', format('scope %s (id %s) is disabled', v_scope.name, v_scope.id), 'Enable the scope before starting a full scan.');
  end if;
  select * into v_scan from dsx.full_scans f where f.scope_id = p_scope_id and f.status in ('queued', 'running');
  if found then
    v_result := (v_scan.id, true, v_scan.status);
    return v_result;
  end if;
  insert into dsx.full_scans (scope_id, requested_by)
  values (p_scope_id, coalesce(p_requested_by, dsx_private.actor()))
  returning * into v_scan;
  perform graphile_worker.add_job(
    'full-scan-scope',
    dsx_private.job_envelope('full-scan-scope', v_scan.root_job_id, v_scan.correlation_id, v_scan.root_job_id, null,
                             'full-scan:' || v_scan.id, 'full_scan', v_scan.id::text, v_scope.integration_id,
                             v_scope.id, null, v_scan.requested_by, jsonb_build_object('full_scan_id', v_scan.id)),
    job_key := 'full-scan:' || v_scan.id,
    max_attempts := 10,
    priority := dsx_private.job_priority('full-scan-scope'));
  perform dsx_private.audit(v_scan.requested_by, 'full_scan.requested', v_scope.id, v_scan.id, v_scan.correlation_id, '{}');
  perform dsx_private.notify_full_scan(v_scan.id, 'queued');
  v_result := (v_scan.id, false, v_scan.status);
  return v_result;
end $$;
comment on function dsx.start_full_scan(bigint, text) is E'@behavior -queryField -mutationField -typeField\nStarts a full scan of a scope, or returns the active one.';
revoke execute on function dsx.start_full_scan(bigint, text) from public;
grant execute on function dsx.start_full_scan(bigint, text) to dsx_operator;

-- Cancels a queued or running full scan. drain: queued and in-flight scan jobs finish and are finalized
-- normally; interrupt: every object not yet finalized is finalized now as 'canceled' (its scan job, when
-- it runs, finds it finalized and does nothing). Either way no further enumeration page is recorded.
-- Canceling a scan that already ended changes nothing and returns it as it is.
create or replace function dsx.cancel_full_scan(p_full_scan_id bigint, p_mode text default 'drain', p_requested_by text default null)
returns dsx.full_scans language plpgsql security definer set search_path = pg_catalog, pg_temp as $$
declare
  v_scan dsx.full_scans;
  v_canceled bigint := 0;
begin
  if p_mode is null or p_mode not in ('drain', 'interrupt') then
    perform dsx_private.raise('22023', format('cancel mode must be drain or interrupt (got %L)', p_mode));
  end if;
  select * into v_scan from dsx.full_scans f where f.id = p_full_scan_id for update;
  if not found then
    perform dsx_private.raise('P0002', format('unknown full scan id %s', p_full_scan_id));
  end if;
  if v_scan.status not in ('queued', 'running') then
    return v_scan;
  end if;
  if p_mode = 'interrupt' then
    -- Rows locked by a finalize or scan batch in flight are skipped: they are being finalized (or
    -- their finalize job queued) right now and will be counted by that transaction.
    with c as (
      update dsx.scan_results r
         set state = 'finalized', outcome = 'canceled', reason = 'interrupted',
             raw_reason = 'full scan canceled (interrupt)', normalization_version = 1, finalized_at = now()
       where r.id in (select x.id from dsx.scan_results x
                       where x.full_scan_id = p_full_scan_id and x.state <> 'finalized'
                         for update skip locked)
      returning 1)
    select count(*) into v_canceled from c;
  end if;
  update dsx.full_scans f
     set status = 'canceled', cancel_mode = p_mode, cancel_requested_at = now(),
         finalized = f.finalized + v_canceled, canceled_count = f.canceled_count + v_canceled,
         finished_at = case when f.finalized + v_canceled = f.discovered then now() end,
         updated_at = now()
   where f.id = p_full_scan_id
  returning * into v_scan;
  perform dsx_private.audit(coalesce(p_requested_by, dsx_private.actor()), 'full_scan.canceled', v_scan.scope_id, v_scan.id,
                            v_scan.correlation_id, jsonb_build_object('mode', p_mode, 'objects_canceled', v_canceled));
  perform dsx_private.notify_full_scan(v_scan.id, 'canceled');
  return v_scan;
end $$;
comment on function dsx.cancel_full_scan(bigint, text, text) is E'@behavior -queryField -mutationField -typeField\nCancels a queued or running full scan (drain or interrupt).';
revoke execute on function dsx.cancel_full_scan(bigint, text, text) from public;
grant execute on function dsx.cancel_full_scan(bigint, text, text) to dsx_operator;

-- Queues the EnumerateScopePageJob of the scan's next page (page number = pages recorded, from the
-- durable cursor), for begin_full_scan, record_page, and finalize_results when it resumes a scan paused
-- at its window. The job key makes a second call for the same page change nothing.
create or replace function dsx_private.enqueue_enumeration_page(p_scan dsx.full_scans, p_parent_job_id uuid)
returns void language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
  v_integration_id bigint;
begin
  select s.integration_id into v_integration_id from dsx.scopes s where s.id = p_scan.scope_id;
  perform graphile_worker.add_job(
    'enumerate-scope-page',
    dsx_private.job_envelope('enumerate-scope-page', gen_random_uuid(), p_scan.correlation_id, p_scan.root_job_id,
                             coalesce(p_parent_job_id, p_scan.root_job_id), 'enum:' || p_scan.id || ':' || p_scan.pages,
                             'full_scan', p_scan.id::text, v_integration_id, p_scan.scope_id, null, p_scan.requested_by,
                             jsonb_build_object('full_scan_id', p_scan.id, 'page_no', p_scan.pages, 'cursor', p_scan.cursor)),
    job_key := 'enum:' || p_scan.id || ':' || p_scan.pages,
    max_attempts := 10,
    priority := dsx_private.job_priority('enumerate-scope-page'));
end $$;

-- FullScanScopeJob: queued -> running, and the first page job. Safe to run twice.
create or replace function dsx_private.begin_full_scan(p_full_scan_id bigint) returns text language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
  v_scan dsx.full_scans;
  v_scope dsx.scopes;
begin
  select * into v_scan from dsx.full_scans f where f.id = p_full_scan_id for update;
  if not found then
    return 'missing';
  end if;
  if v_scan.status <> 'queued' then
    return v_scan.status;
  end if;
  select * into v_scope from dsx.scopes s where s.id = v_scan.scope_id;
  update dsx.full_scans f set status = 'running', started_at = now(), updated_at = now() where f.id = p_full_scan_id
  returning * into v_scan;
  perform dsx_private.enqueue_enumeration_page(v_scan, v_scan.root_job_id);
  perform dsx_private.audit('dsx-connect', 'full_scan.started', v_scope.id, v_scan.id, v_scan.correlation_id, '{}');
  perform dsx_private.notify_full_scan(v_scan.id, 'running');
  return 'started';
end $$;

-- EnumerateScopePageJob: records one page of discovered objects with their ScanObjectJobs, the counters,
-- the cursor checkpoint and the next page job, all in one transaction. A page that was already recorded
-- (a retry after a crash) changes nothing. Objects already discovered by this scan are not counted again.
-- Pages of one scan are serialized by an advisory lock (a retry of a page waits for, then sees, the
-- attempt before it); the full-scan row is locked only at the end, to bump the counters and move the
-- cursor, and the page is recorded only if the scan is still running then (a cancel or failure that
-- committed meanwhile rolls the page back). Measured: a page held the row lock ~75 ms per 1,000 objects
-- when it took it first, and concurrent finalize batches waited behind it.
-- The page's skipped entries (what the listing met and did not return as objects) are recorded with
-- it, each once per scan, and counted per reason on the scan: a page recorded once records them once.
-- p_objects: [{"identity": text, "size": bigint, "etag": text, "mtime": timestamptz, "version_id": text}, ...]
-- p_skipped: [{"identity": text, "reason": text, "detail": text}, ...]
-- p_window, p_page_size: the enumerator's DSX_SCAN_WINDOW and DSX_PAGE_SIZE (null window: unbounded).
create or replace function dsx_private.record_page(
  p_full_scan_id bigint, p_page_no integer, p_objects jsonb, p_next_cursor text, p_parent_job_id uuid,
  p_scan_max_attempts integer, p_skipped jsonb default '[]', p_window integer default null, p_page_size integer default null
) returns jsonb language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
  v_scan dsx.full_scans;
  v_scope dsx.scopes;
  v_new bigint;
  v_status text;
  v_skipped record;
begin
  perform pg_advisory_xact_lock(hashtextextended('dsx.enumerate:' || p_full_scan_id, 0));
  select * into v_scan from dsx.full_scans f where f.id = p_full_scan_id;
  if not found then
    return jsonb_build_object('status', 'missing');
  end if;
  if v_scan.status <> 'running' then
    return jsonb_build_object('status', v_scan.status);
  end if;
  if v_scan.pages > p_page_no then
    return jsonb_build_object('status', 'duplicate');
  end if;
  if v_scan.pages < p_page_no then
    perform dsx_private.raise('55000', format('full scan %s: page %s arrived before page %s was recorded', p_full_scan_id, p_page_no, v_scan.pages));
  end if;
  select * into v_scope from dsx.scopes s where s.id = v_scan.scope_id;

  begin
    select count(*) into v_new
      from dsx_private.admit_objects(p_objects, 'fs:' || v_scan.id || ':', 'full_scan', v_scan.id::text, v_scan.id,
                                     v_scope.id, v_scope.integration_id, v_scan.correlation_id, v_scan.root_job_id,
                                     p_parent_job_id, v_scan.requested_by, p_scan_max_attempts);

    with k as (
      select * from jsonb_to_recordset(coalesce(p_skipped, '[]')) as x(identity text, reason text, detail text)
    ), ins as (
      insert into dsx.skipped_entries as e (full_scan_id, page_no, object_identity, reason, detail)
      select p_full_scan_id, p_page_no, k.identity, k.reason, k.detail from k
      on conflict (full_scan_id, dsx_private.identity_hash(object_identity)) do nothing
      returning e.reason
    )
    select count(*) filter (where ins.reason = 'symlink') as symlink,
           count(*) filter (where ins.reason = 'special_file') as special_file,
           count(*) filter (where ins.reason = 'unreadable_directory') as unreadable_directory,
           count(*) filter (where ins.reason = 'directory_marker') as directory_marker,
           count(*) filter (where ins.reason = 'internal') as internal
      into v_skipped
      from ins;

    update dsx.full_scans f
       set discovered = f.discovered + v_new, pages = f.pages + 1, cursor = p_next_cursor,
           skipped_symlink_count = f.skipped_symlink_count + v_skipped.symlink,
           skipped_special_file_count = f.skipped_special_file_count + v_skipped.special_file,
           skipped_unreadable_directory_count = f.skipped_unreadable_directory_count + v_skipped.unreadable_directory,
           skipped_directory_marker_count = f.skipped_directory_marker_count + v_skipped.directory_marker,
           skipped_internal_count = f.skipped_internal_count + v_skipped.internal,
           enumeration_exhausted = (p_next_cursor is null), updated_at = now(),
           enumeration_error = null, enumeration_error_at = null, enumeration_attempt = null,
           enumeration_max_attempts = null, enumeration_retry_at = null,
           scan_window = p_window, page_size = p_page_size,
           -- Admission window: pause, rather than queue the next page, when it would not fit beside the
           -- objects not yet finalized (decided under this row's lock; finalize_results resumes).
           enumeration_paused_at = case
             when p_next_cursor is not null and p_window is not null
                  and f.discovered + v_new - f.finalized + coalesce(p_page_size, 0) > p_window then now() end
     where f.id = p_full_scan_id and f.status = 'running'
    returning * into v_scan;
    if not found then
      -- Canceled or failed while this page was being written: undo the page (this block's subtransaction).
      raise exception using errcode = 'DXNRN', message = 'full scan no longer running';
    end if;
  exception when sqlstate 'DXNRN' then
    select f.status into v_status from dsx.full_scans f where f.id = p_full_scan_id;
    return jsonb_build_object('status', v_status);
  end;

  if p_next_cursor is not null then
    if v_scan.enumeration_paused_at is null then
      perform dsx_private.enqueue_enumeration_page(v_scan, p_parent_job_id);
    end if;
  else
    perform dsx_private.audit('dsx-connect', 'full_scan.enumeration_exhausted', v_scope.id, v_scan.id, v_scan.correlation_id,
                              jsonb_build_object('pages', p_page_no + 1, 'discovered', v_scan.discovered));
    perform dsx_private.complete_if_done(array[p_full_scan_id]);
  end if;
  return jsonb_build_object('status', 'recorded', 'new', v_new);
end $$;

-- A listing failed and will be tried again: the scan shows the error, the attempt and when the next
-- one runs (cleared by the next page recorded). Changes nothing for a scan that is no longer running.
create or replace function dsx_private.note_enumeration_error(
  p_full_scan_id bigint, p_error text, p_attempt integer, p_max_attempts integer, p_retry_at timestamptz
) returns void language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
  v_scan dsx.full_scans;
begin
  update dsx.full_scans f
     set enumeration_error = p_error, enumeration_error_at = now(), enumeration_attempt = p_attempt,
         enumeration_max_attempts = p_max_attempts, enumeration_retry_at = p_retry_at, updated_at = now()
   where f.id = p_full_scan_id and f.status = 'running'
  returning * into v_scan;
  if found then
    perform dsx_private.audit('dsx-connect', 'full_scan.enumeration_error', v_scan.scope_id, v_scan.id, v_scan.correlation_id,
                              jsonb_build_object('error', p_error, 'attempt', p_attempt, 'max_attempts', p_max_attempts,
                                                 'retry_at', p_retry_at));
    perform dsx_private.notify_full_scan(v_scan.id, v_scan.status);
  end if;
end $$;

-- An enumeration that cannot go on (scope root gone, attempts exhausted): the scan ends 'failed' and
-- nothing more is enumerated; objects already queued are still scanned and finalized, and the scan is
-- finished when the last of them is (at once if none is in flight).
create or replace function dsx_private.fail_full_scan(p_full_scan_id bigint, p_error text) returns void language plpgsql set search_path = pg_catalog, pg_temp as $$
declare
  v_scan dsx.full_scans;
begin
  update dsx.full_scans f
     set status = 'failed', error = p_error, updated_at = now(),
         finished_at = case when f.finalized = f.discovered then now() end
   where f.id = p_full_scan_id and f.status in ('queued', 'running')
  returning * into v_scan;
  if found then
    perform dsx_private.audit('dsx-connect', 'full_scan.failed', v_scan.scope_id, v_scan.id, v_scan.correlation_id,
                              jsonb_build_object('error', p_error));
    perform dsx_private.notify_full_scan(v_scan.id, 'failed');
  end if;
end $$;

-- Progress NOTIFYs for the fullScanProgress subscription: on 'dsx_full_scan:<id>', at most once per
-- 200 ms per scan (the throttle is the row's progress_notified_at, checked under the row lock every
-- counter update already takes). A recorded page notifies even when it discovered nothing new: it may
-- carry skipped entries only, or exhaust enumeration (which makes the percentage and ETA known).
create or replace function dsx_private.tg_full_scans_progress_notify() returns trigger language plpgsql set search_path = pg_catalog, pg_temp as $$
begin
  if old.progress_notified_at is null or clock_timestamp() - old.progress_notified_at >= interval '200 milliseconds' then
    new.progress_notified_at := clock_timestamp();
    perform pg_notify('dsx_full_scan:' || new.id,
                      json_build_object('id', new.id, 'status', new.status, 'kind', 'progress',
                                        'finished', new.finished_at is not null)::text);
  end if;
  return new;
end $$;
create or replace trigger full_scans_progress_notify before update on dsx.full_scans
  for each row when (new.finalized is distinct from old.finalized or new.discovered is distinct from old.discovered
                     or new.pages is distinct from old.pages)
  execute function dsx_private.tg_full_scans_progress_notify();
