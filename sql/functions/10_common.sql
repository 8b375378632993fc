-- Repeatable: the one current definition of each function below, with its attributes, grants and
-- smart tags. Applied by `dsx-connect migrate` whenever a file in sql/functions changes (rules in
-- sql/README.md).
--
-- Helpers every other function file uses: errors, the audit trail, job priorities and envelopes,
-- full-scan notifications, scope roots, the default policy, the credentials check.

create or replace function dsx_private.raise(p_code text, p_message text, p_hint text default null)
returns void language plpgsql set search_path = pg_catalog, pg_temp as $$
begin
  raise exception using errcode = p_code, message = p_message, hint = coalesce(p_hint, '');
end $$;

-- Canonical form of a root inside an integration: '/'-separated, no leading/trailing '/', no '.' or
-- empty segments; '' is the integration root. '..' can never be normalized away: it is refused.
create or replace function dsx_private.normalize_root(p_root text) returns text
language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
declare
  v_parts text[];
begin
  if p_root is null then
    return '';
  end if;
  if p_root ~ '^/' then
    perform dsx_private.raise('22023', format('scope root %L must be relative to the integration root (no leading "/")', p_root));
  end if;
  select coalesce(array_agg(part order by ord), '{}') into v_parts
    from unnest(string_to_array(p_root, '/')) with ordinality as t(part, ord)
   where part <> '' and part <> '.';
  if '..' = any(v_parts) then
    perform dsx_private.raise('22023', format('scope root %L may not contain ".." segments', p_root));
  end if;
  return array_to_string(v_parts, '/');
end $$;

create or replace function dsx_private.default_policy() returns jsonb language sql immutable set search_path = pg_catalog, pg_temp as $$
  select '{"malicious": {"remediation": "none", "notify": true}}'::jsonb
$$;

-- Credentials that are not a JSON object would break the table's check constraint, whose error detail
-- ("Failing row contains ...") carries the credentials into the server log: they are refused first,
-- with a message that shows nothing of them.
create or replace function dsx_private.check_credentials(p_credentials jsonb) returns void language plpgsql immutable set search_path = pg_catalog, pg_temp as $$
begin
  if p_credentials is not null and jsonb_typeof(p_credentials) <> 'object' then
    perform dsx_private.raise('22023', format('credentials must be a JSON object (got a JSON %s)', jsonb_typeof(p_credentials)));
  end if;
end $$;

-- Priorities (lower runs first). Each worker lane has a runner of its own (src/worker/run.ts), so a
-- priority orders the jobs of one lane; across lanes it orders only graphile-worker's walk of its
-- (priority, run_at) index, which every fetch takes from the lowest priority up.
--   monitor lane: monitor-finalize-scan-object -40, monitor-scan-object -35 (manual: -30) and
--     monitor-event-ingest -35: below every other lane, so that its fetches find their jobs before
--     walking anything else (a tagging policy alone queues one side-effect job per object).
--   pipeline lane: finalize-scan-object -20 (downstream stages run ahead of upstream backlogs, so that
--     progress moves while a large scope is still being enumerated); scan-object of monitoring -10 and
--     of manual scans -5 (only jobs queued under that name before the monitor lane existed);
--     enumerate-scope-page -1 (a page queued when the admission window makes room must not wait behind
--     the window's own scan jobs, or the scan would drain before it refills); full-scan scan-object /
--     full-scan-scope 0.
--   effects lane: apply-remediation / send-notification -15.
create or replace function dsx_private.job_priority(p_task text, p_source_type text default 'full_scan')
returns integer language sql immutable set search_path = pg_catalog, pg_temp as $$
  select case
    when p_task = 'monitor-finalize-scan-object' then -40
    when p_task = 'monitor-scan-object' and p_source_type = 'manual' then -30
    when p_task in ('monitor-scan-object', 'monitor-event-ingest') then -35
    when p_task = 'finalize-scan-object' then -20
    when p_task in ('apply-remediation', 'send-notification') then -15
    when p_task = 'scan-object' and p_source_type = 'monitor' then -10
    when p_task = 'scan-object' and p_source_type = 'manual' then -5
    when p_task = 'enumerate-scope-page' then -1
    else 0
  end
$$;

-- The task of a ScanObjectJob by where its object came from: full scans' scans run in the pipeline lane
-- ('scan-object'), monitoring's and manual scans' in the monitor lane ('monitor-scan-object'), whose
-- runner never holds full-scan jobs. The envelope's job_type is the task name; the scan job names its
-- finalize job after its own lane (src/jobs/envelope.ts, FINALIZE_TASK_OF).
create or replace function dsx_private.scan_task(p_source_type text) returns text
language sql immutable set search_path = pg_catalog, pg_temp as $$
  select case when p_source_type = 'full_scan' then 'scan-object' else 'monitor-scan-object' end
$$;

-- The canonical job envelope (see src/jobs/envelope.ts, which validates it on the consuming side).
create or replace function dsx_private.job_envelope(
  p_job_type text, p_job_id uuid, p_correlation_id uuid, p_root_job_id uuid, p_parent_job_id uuid,
  p_idempotency_key text, p_source_type text, p_source_entity_id text, p_integration_id bigint,
  p_scope_id bigint, p_object_identity text, p_requested_by text, p_body jsonb
) returns json language sql stable set search_path = pg_catalog, pg_temp as $$
  select json_build_object(
    'schema_version', 1,
    'job_type', p_job_type,
    'job_id', p_job_id,
    'correlation_id', p_correlation_id,
    'root_job_id', p_root_job_id,
    'parent_job_id', p_parent_job_id,
    'idempotency_key', p_idempotency_key,
    'source_type', p_source_type,
    'source_entity_id', p_source_entity_id,
    'integration_id', p_integration_id,
    'scope_id', p_scope_id,
    'object_identity', p_object_identity,
    'requested_by', p_requested_by,
    'created_at', now(),
    'body', p_body)
$$;

-- Who is acting, for the audit trail: the API caller (the server sets dsx.actor per request, e.g.
-- "api token:ci", "api jwt:alice"), the CLI's OS user ("cli alice@host"), or else the database user.
create or replace function dsx_private.actor() returns text language sql stable set search_path = pg_catalog, pg_temp as $$
  select coalesce(nullif(current_setting('dsx.actor', true), ''),
                  'api ' || nullif(current_setting('dsx.subject', true), ''),
                  'db ' || session_user)
$$;

create or replace function dsx_private.audit(
  p_actor text, p_action text, p_scope_id bigint, p_full_scan_id bigint, p_correlation_id uuid, p_detail jsonb
) returns void language sql set search_path = pg_catalog, pg_temp as $$
  insert into dsx.audit_log (actor, action, scope_id, full_scan_id, correlation_id, detail)
  values (p_actor, p_action, p_scope_id, p_full_scan_id, p_correlation_id, coalesce(p_detail, '{}'));
$$;

-- Status changes are announced on channel 'dsx_full_scan' (payload: {"id": ..., "status": ...}) and, for
-- the fullScanProgress subscription, on 'dsx_full_scan:<id>' with {"id", "status", "kind": "status",
-- "finished"} (progress NOTIFYs: tg_full_scans_progress_notify in 30_full_scans.sql).
create or replace function dsx_private.notify_full_scan(p_id bigint, p_status text) returns void language plpgsql set search_path = pg_catalog, pg_temp as $$
begin
  perform pg_notify('dsx_full_scan', json_build_object('id', p_id, 'status', p_status)::text);
  perform pg_notify('dsx_full_scan:' || p_id,
                    json_build_object('id', p_id, 'status', p_status, 'kind', 'status',
                                      'finished', (select f.finished_at is not null from dsx.full_scans f where f.id = p_id))::text);
end $$;
