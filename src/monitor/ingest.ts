/**
 * MonitorEventIngestJob: decides, for each event of the job, which scope owns its object (at most one:
 * scope roots never overlap within an integration), whether that scope is enabled and monitored, and
 * whether its filters keep the object. The SQL side (dsx_private.ingest_monitor_events) then debounces
 * and enqueues the ScanObjectJobs, records ignored events with their reason, and counts, in one
 * transaction.
 */
import { isWithin } from '../connectors/identity.ts';
import { integrationGet } from '../db/sql/catalog.ts';
import { ingestScopes, monitorEventsIngest, monitorEventsPending, type IngestDecision, type IngestScope, type PendingEvent } from '../db/sql/monitor.ts';
import type { Job } from '../jobs/envelope.ts';
import type { PipelineContext } from '../pipeline/context.ts';
import { scopeFilter } from '../pipeline/filters.ts';

/** The bucket or container an integration is bound to (settings.bucket / settings.container), if any. */
function boundContainer(settings: Record<string, unknown>): string | null {
  const c = settings.bucket ?? settings.container;
  return typeof c === 'string' && c !== '' ? c : null;
}

export function decide(event: PendingEvent, scopes: IngestScope[], container: string | null): IngestDecision {
  const ignore = (reason: string, scopeId: number | null = null): IngestDecision => ({ event_id: event.id, scope_id: scopeId, action: 'ignore', reason });
  if (container !== null && event.container !== null && event.container !== container) return ignore('other_container');
  const scope = scopes.find((s) => isWithin(s.root, event.object_identity));
  if (!scope) return ignore('no_scope');
  if (!scope.enabled) return ignore('scope_disabled', scope.id);
  if (!scope.monitor) return ignore('monitoring_off', scope.id);
  if (event.event_type === 'deleted') return ignore('deleted', scope.id);
  if (!scopeFilter(scope.root, scope.include_globs, scope.exclude_globs)(event.object_identity)) return ignore('excluded', scope.id);
  return { event_id: event.id, scope_id: scope.id, action: 'scan', reason: null };
}

export async function ingestMonitorEvents(ctx: PipelineContext, job: Job<'monitor-event-ingest'>) {
  const { event_ids: ids, trailing } = job.body;
  const events = await monitorEventsPending(ctx.pool, ids, trailing);
  if (events.length === 0) return { scanned: 0, deferred: 0, ignored: 0 }; // a redelivery: all done before
  const integration = await integrationGet(ctx.pool, job.integration_id);
  if (!integration) return { scanned: 0, deferred: 0, ignored: 0 }; // deleted: its events went with it
  const scopes = await ingestScopes(ctx.pool, job.integration_id);
  const container = boundContainer(integration.settings);
  return monitorEventsIngest(ctx.pool, {
    decisions: events.map((e) => decide(e, scopes, container)),
    trailing,
    jobId: job.job_id,
    debounceMs: ctx.config.monitorDebounceMs,
    scanMaxAttempts: ctx.config.scanMaxAttempts,
  });
}
