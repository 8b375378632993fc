/** Runtime SQL for dsx.scanner_status: the scanner's health as each worker process sees it. */
import type { ScannerStatus } from '../../dsxa/health.ts';
import type { Queryable } from './queryable.ts';


/** Records a process's view of the scanner (dsx_private.report_scanner_status). */
export async function scannerStatusReport(
  db: Queryable,
  args: { processId: string; hostname: string; pid: number; dsxaUrl: string; status: ScannerStatus },
): Promise<void> {
  await db.query('select dsx_private.report_scanner_status($1, $2, $3, $4, $5, $6, $7)', [
    args.processId,
    args.hostname,
    args.pid,
    args.dsxaUrl,
    args.status.state,
    args.status.since,
    args.status.error,
  ]);
}

/** Keeps the process's row fresh and drops rows of processes silent for longer than `deadAfterMs`. */
export async function scannerStatusTouch(db: Queryable, processId: string, deadAfterMs: number): Promise<void> {
  await db.query('select dsx_private.touch_scanner_status($1, make_interval(secs => $2))', [processId, deadAfterMs / 1000]);
}

/** Forgets the process's row (a clean stop). */
export async function scannerStatusForget(db: Queryable, processId: string): Promise<void> {
  await db.query('delete from dsx.scanner_status where process_id = $1', [processId]);
}

/** The scanner as the live workers see it: the worst state, with its start and error; null when none reports. */
export async function scannerStatusCurrent(db: Queryable, liveWithinMs: number): Promise<{ state: string; since: Date; error: string | null } | null> {
  const { rows } = await db.query<{ state: string; since: Date; error: string | null }>(
    `select state, since, error from dsx.scanner_status where last_seen_at > now() - make_interval(secs => $1)
      order by (state = 'ok'), since limit 1`,
    [liveWithinMs / 1000],
  );
  return rows[0] ?? null;
}
