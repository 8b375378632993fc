/**
 * The retention sweep's place in graphile-worker's crontab. graphile-worker schedules each slot once
 * per database however many workers carry the item: every worker's cron advances
 * `_private_known_crontabs.last_execution` for the identifier in the statement that adds the slot's
 * job (`on conflict ... where last_execution < excluded.last_execution`), and only the one that
 * advanced it adds the job.
 */
import { parseCronItems, type ParsedCronItem } from 'graphile-worker';
import type { RetentionConfig } from '../config.ts';
import { CRON_TASKS } from '../jobs/envelope.ts';

/** The crontab identifier of the sweep (a row of graphile_worker._private_known_crontabs). */
export const RETENTION_CRON_IDENTIFIER = 'dsx-retention-sweep';

/**
 * A slot missed while no worker with the maintain role ran (a deploy, an outage) is swept when one
 * starts, if it was within the last hour; older misses are covered by the next slot anyway, since each
 * sweep deletes everything older than the retention, not one hour's worth.
 */
const BACKFILL_MS = 60 * 60_000;

/** The sweep's cron item; `schedule` has been checked by loadConfig with the same parser. */
export function retentionCronItems(retention: RetentionConfig): ParsedCronItem[] {
  return parseCronItems([
    {
      task: CRON_TASKS.retentionSweep,
      match: retention.schedule,
      identifier: RETENTION_CRON_IDENTIFIER,
      options: {
        backfillPeriod: BACKFILL_MS,
        // A slot's job not started yet is replaced by the next slot's: sweeps never pile up behind a long one.
        jobKey: RETENTION_CRON_IDENTIFIER,
        jobKeyMode: 'replace',
        // A failed sweep is retried a few times (e^1..e^4 s apart); the next slot comes anyway.
        maxAttempts: 5,
      },
    },
  ]);
}
