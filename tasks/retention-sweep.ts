/** RetentionSweep: scheduled by graphile-worker's crontab; deletes what is older than its retention. */
import { sweepRetention } from '../src/retention/sweep.ts';
import { defineTask } from '../src/worker/define-task.ts';

export default defineTask('retention-sweep', (ctx, job, _attempt, log, helpers) =>
  sweepRetention(ctx.pool, ctx.config.retention, log, {
    actor: 'dsx-connect',
    slot: { ts: job.body.slot, backfilled: job.body.backfilled },
    // A worker shutting down stops the sweep between two chunks; the next slot goes on from there.
    signal: helpers.abortSignal,
  }),
);
