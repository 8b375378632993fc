/** FullScanScopeJob: marks the scan running and emits the first enumeration page job. */
import { beginFullScan } from '../src/pipeline/full-scan.ts';
import { defineTask } from '../src/worker/define-task.ts';

export default defineTask('full-scan-scope', (ctx, job) => beginFullScan(ctx, job));
