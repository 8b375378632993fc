/** SendNotificationJob: deliver the decision to its webhook channel, once per decision. */
import { executeSideEffect } from '../src/pipeline/side-effects.ts';
import { defineTask } from '../src/worker/define-task.ts';

export default defineTask('send-notification', (ctx, job, attempt) => executeSideEffect(ctx, job, attempt, ctx.hooks.sideEffects));
