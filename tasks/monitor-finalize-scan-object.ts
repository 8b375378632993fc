/**
 * FinalizeScanObjectJob of monitoring (and manual scans), in the monitor lane: the same code and batch
 * payloads as finalize-scan-object, under a task name that only the monitor lane's runner fetches.
 */
import { defineTask } from '../src/worker/define-task.ts';
import { finalizeEnvelope } from './finalize-scan-object.ts';

export default defineTask('monitor-finalize-scan-object', (ctx, job, _attempt, log) => finalizeEnvelope(ctx, job, log), { batch: true });
