-- Enumeration ahead of the scan backlog. FullScanScopeJob and EnumerateScopePageJob had the priority
-- of full-scan scan jobs (0), and graphile-worker fetches by (priority, run_at): a page job, queued
-- after the scan jobs of every page before it, sat at the end of that order. A worker that runs the
-- whole pipeline fetched it only once every earlier scan job had been fetched, so enumeration moved
-- in lockstep with scanning; a worker with only the enumerate role walked the whole backlog of scan
-- jobs (not its tasks) on every fetch: 44 ms per fetch with 300,000 queued scan jobs, growing with
-- the backlog, which is why enumerating a million objects slowed from ~7,000 to ~3,000 objects/s.
-- A second scope's full scan likewise waited for the first scan's entire backlog before it started.
-- Now both run at -1: ahead of full-scan scans (0), behind everything that finishes work already
-- under way (finalize -20, side effects -15, monitoring -10, manual scans -5). A scan has one page
-- job at a time, so this takes at most one worker slot per running scan.
create or replace function dsx_private.job_priority(p_task text, p_source_type text default 'full_scan')
returns integer language sql immutable as $$
  select case
    when p_task = 'finalize-scan-object' then -20
    when p_task in ('apply-remediation', 'send-notification') then -15
    when p_task = 'monitor-event-ingest' then -10
    when p_task = 'scan-object' and p_source_type = 'monitor' then -10
    when p_task = 'scan-object' and p_source_type = 'manual' then -5
    when p_task in ('full-scan-scope', 'enumerate-scope-page') then -1
    else 0
  end
$$;

-- Jobs already queued keep the priority they were given; move the waiting ones.
update graphile_worker._private_jobs j
   set priority = -1
  from graphile_worker._private_tasks t
 where t.id = j.task_id and t.identifier in ('full-scan-scope', 'enumerate-scope-page') and j.priority = 0;
