/** `dsx-connect retention [--json]` and `retention sweep [--json]`: what is kept, and a sweep now. */
import type { Command } from 'commander';
import type { RetentionConfig } from '../config.ts';
import { REPORTED_TABLES, retentionEligible, retentionLastSweep, type ReportedTable } from '../db/sql/retention.ts';
import { log } from '../log.ts';
import { sweepRetention } from '../retention/sweep.ts';
import { action, output, withDatabase } from './common.ts';

/** The retention that applies to each table, in days (0 = forever; null = its replay window). */
function tableDays(r: RetentionConfig, table: ReportedTable): number | null {
  switch (table) {
    case 'scan_results':
    case 'side_effects':
    case 'skipped_entries':
      return r.resultsDays;
    case 'monitor_events':
    case 'monitor_debounce':
      return r.eventsDays;
    case 'event_signatures':
      return null;
    case 'audit_log':
      return r.auditDays;
    case 'failed_jobs':
    case 'invalid_jobs':
      return r.jobsDays;
  }
}

const FAMILY: Record<ReportedTable, string> = {
  scan_results: 'results',
  side_effects: 'results',
  skipped_entries: 'results',
  monitor_events: 'events',
  monitor_debounce: 'events',
  event_signatures: 'events',
  audit_log: 'audit',
  failed_jobs: 'jobs',
  invalid_jobs: 'jobs',
};

const TABLE_LABEL: Record<ReportedTable, string> = {
  scan_results: 'dsx.scan_results',
  side_effects: 'dsx.side_effects',
  skipped_entries: 'dsx.skipped_entries',
  monitor_events: 'dsx.monitor_events',
  monitor_debounce: 'dsx_private.monitor_debounce',
  event_signatures: 'dsx_private.event_signatures',
  audit_log: 'dsx.audit_log',
  failed_jobs: 'graphile_worker jobs failed for good',
  invalid_jobs: 'dsx.invalid_jobs',
};

function describeDays(days: number | null): string {
  if (days === null) return 'replay window';
  return days === 0 ? 'forever' : `${days} days`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

export function registerRetentionCommands(program: Command): void {
  const retention = program
    .command('retention')
    .description('per table: how long rows are kept, rows a sweep would delete now, what the last sweep deleted and when')
    .option('--json', 'print JSON')
    .action(
      action(async (o: { json?: boolean }) => {
        await withDatabase(async (db, config) => {
          const r = config.retention;
          const [tables, last] = await Promise.all([
            retentionEligible(db.pool, { results: r.resultsDays, events: r.eventsDays, audit: r.auditDays, jobs: r.jobsDays }),
            retentionLastSweep(db.pool),
          ]);
          const byName = new Map(tables.map((t) => [t.table_name, t]));
          const rows = REPORTED_TABLES.map((name) => {
            const t = byName.get(name);
            return {
              family: FAMILY[name],
              table: name,
              retention_days: tableDays(r, name),
              eligible_now: t?.eligible ?? null,
              last_deleted: t?.last_deleted ?? null,
              last_swept_at: t?.last_swept_at ?? null,
            };
          });
          const lastSweep = last && {
            at: last.at,
            actor: last.actor,
            finished: last.detail.finished ?? null,
            duration_ms: last.detail.duration_ms ?? null,
            slot: last.detail.slot ?? null,
          };
          output(!!o.json, { schedule: r.schedule, last_sweep: lastSweep, tables: rows }, () =>
            [
              `schedule: ${r.schedule} (DSX_RETENTION_SCHEDULE; run by workers with the maintain role)`,
              lastSweep
                ? `last sweep: ${lastSweep.at.toISOString()} by ${lastSweep.actor}, ${lastSweep.duration_ms} ms${lastSweep.finished === false ? ', not finished (time budget spent; the next sweep goes on)' : ''}`
                : 'last sweep: never',
              '',
              table([
                ['family', 'table', 'kept', 'eligible now', 'last sweep deleted'],
                ...rows.map((x) => [
                  x.family,
                  TABLE_LABEL[x.table],
                  describeDays(x.retention_days),
                  x.eligible_now === null ? '-' : String(x.eligible_now),
                  x.last_swept_at ? `${x.last_deleted} at ${x.last_swept_at.toISOString()}` : '-',
                ]),
              ]),
            ].join('\n'),
          );
        });
      }),
    );
  retention
    .command('sweep')
    .description('run one retention sweep now (as the schedule does) and print what it deleted')
    .option('--json', 'print JSON')
    .action(
      action(async (o: { json?: boolean }) => {
        const report = await withDatabase((db, config) => sweepRetention(db.pool, config.retention, log, { actor: null }));
        output(!!o.json, report, () => {
          if (report.skipped) return 'another sweep is running: nothing done (try again when it ends)';
          const lines = REPORTED_TABLES.filter((name) => report.deleted[name] !== undefined).map((name) => `${TABLE_LABEL[name]}: ${report.deleted[name]} deleted`);
          lines.push(report.finished ? `done in ${report.durationMs} ms` : `stopped after ${report.durationMs} ms (time budget spent): run it again to go on`);
          return lines.join('\n');
        });
        if (report.skipped) process.exitCode = 1;
      }),
    );
}
