/**
 * ScanObjectJob of monitoring (and manual scans), in the monitor lane: the same code as scan-object,
 * under a task name that only the monitor lane's runner fetches, so it never waits behind full-scan
 * jobs another runner has already fetched. Its finalize job goes to the monitor lane too.
 */
import { scanObject } from '../src/pipeline/scan.ts';
import { defineTask } from '../src/worker/define-task.ts';

export default defineTask('monitor-scan-object', (ctx, job, attempt) => scanObject(ctx, job, attempt));
