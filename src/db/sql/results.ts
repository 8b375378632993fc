/** Runtime SQL for reading finalized results (the `results` command). */
import type pg from 'pg';
import { kyselyOn } from '../kysely.ts';

export interface ResultRow {
  identity: string;
  outcome: string;
  reason: string | null;
  source_type: string;
  full_scan_id: number | null;
  finalized_at: string;
}

/** Finalized results of one scope, newest first, optionally since a time and of one outcome. */
export async function resultsList(
  pool: pg.Pool,
  args: { scopeId: number; since?: Date; outcome?: string; limit: number },
): Promise<ResultRow[]> {
  const db = kyselyOn(pool);
  let q = db
    .selectFrom('dsx.scan_results as r')
    .select(['r.object_identity as identity', 'r.outcome', 'r.reason', 'r.source_type', 'r.full_scan_id', 'r.finalized_at'])
    .where('r.scope_id', '=', String(args.scopeId) as never)
    .where('r.state', '=', 'finalized');
  if (args.since) q = q.where('r.finalized_at', '>=', args.since as never);
  if (args.outcome) q = q.where('r.outcome', '=', args.outcome);
  const rows = await q.orderBy('r.finalized_at', 'desc').orderBy('r.id', 'desc').limit(args.limit).execute();
  return rows.map((r) => ({
    identity: r.identity,
    outcome: r.outcome!,
    reason: r.reason,
    source_type: r.source_type,
    full_scan_id: r.full_scan_id === null ? null : Number(r.full_scan_id),
    finalized_at: (r.finalized_at as Date).toISOString(),
  }));
}
