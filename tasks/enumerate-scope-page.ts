/** EnumerateScopePageJob: one page from the connector, recorded with its scan jobs and the next page job. */
import { enumeratePage } from '../src/pipeline/full-scan.ts';
import { defineTask } from '../src/worker/define-task.ts';

export default defineTask('enumerate-scope-page', (ctx, job, attempt) => enumeratePage(ctx, job, attempt));
