/** ScanObjectJob of full scans: fetch the object, submit it to DSXA, emit its FinalizeScanObjectJob. */
import { scanObject } from '../src/pipeline/scan.ts';
import { defineTask } from '../src/worker/define-task.ts';

export default defineTask('scan-object', (ctx, job, attempt) => scanObject(ctx, job, attempt));
