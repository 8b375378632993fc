/** MonitorEventIngestJob: storage events -> their scope, filters, debounce -> ScanObjectJobs. */
import { ingestMonitorEvents } from '../src/monitor/ingest.ts';
import { defineTask } from '../src/worker/define-task.ts';

export default defineTask('monitor-event-ingest', (ctx, job) => ingestMonitorEvents(ctx, job));
