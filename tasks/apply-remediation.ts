/** ApplyRemediationJob: perform the decided action (tag, move, delete) through the connector, once. */
import { executeSideEffect } from '../src/pipeline/side-effects.ts';
import { defineTask } from '../src/worker/define-task.ts';

export default defineTask('apply-remediation', (ctx, job, attempt) => executeSideEffect(ctx, job, attempt, ctx.hooks.sideEffects));
