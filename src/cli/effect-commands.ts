/**
 * `dsx-connect effects`: the side-effect ledger (remediations and notifications) as operators read it,
 * so a webhook that was refused or answered 500, or a quarantine move that failed, is found without SQL.
 */
import type { Command } from 'commander';
import { fullScanFinished } from '../db/sql/full-scans.ts';
import { SIDE_EFFECT_STATUSES, sideEffectsList, type SideEffectRow, type SideEffectStatus } from '../db/sql/side-effect-listing.ts';
import { action, output, positiveInt, UsageError, withDatabase } from './common.ts';
import { intInRange, LIMITS } from './options.ts';

function statusOption(value: string): SideEffectStatus {
  if (!(SIDE_EFFECT_STATUSES as readonly string[]).includes(value)) {
    throw new UsageError(`--status must be one of ${SIDE_EFFECT_STATUSES.join(', ')} (got ${JSON.stringify(value)})`);
  }
  return value as SideEffectStatus;
}

/** One line: time, kind/action, status, object, channel, detail (tab-separated, like `results`). */
export function effectLine(e: SideEffectRow): string {
  const time = new Date(e.executed_at ?? e.created_at).toISOString();
  return [time, `${e.kind}/${e.action}`, e.status, JSON.stringify(e.object_identity), e.channel ? `channel ${e.channel}` : '-', e.detail ?? ''].join('\t');
}

/** Registers `effects`. */
export function registerEffectCommands(program: Command): void {
  program
    .command('effects')
    .description('side effects (remediations, notifications) with their status and why, newest first')
    .option('--scan <id>', 'only those of this full scan')
    .option('--status <status>', `only this status: ${SIDE_EFFECT_STATUSES.join(', ')}`)
    .option('--limit <n>', `at most this many (${LIMITS.resultsLimit.min}-${LIMITS.resultsLimit.max})`, '1000')
    .option('--json', 'print JSON')
    .action(
      action(async (o: { scan?: string; status?: string; limit: string; json?: boolean }) => {
        const fullScanId = o.scan === undefined ? undefined : positiveInt('--scan', o.scan);
        const status = o.status === undefined ? undefined : statusOption(o.status);
        const limit = intInRange('--limit', o.limit, LIMITS.resultsLimit);
        await withDatabase(async (db) => {
          if (fullScanId !== undefined && (await fullScanFinished(db.pool, fullScanId)) === null) {
            throw new UsageError(`unknown full scan id ${fullScanId}`);
          }
          const rows = await sideEffectsList(db.pool, { fullScanId, status, limit });
          output(!!o.json, rows, () => (rows.length ? rows.map(effectLine).join('\n') : '(no side effects)'));
        });
      }),
    );
}
