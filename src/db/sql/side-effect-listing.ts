/**
 * Runtime SQL for reading the side-effect ledger as operators do (`dsx-connect effects`): what was
 * decided, how it ended and why. The ledger's own transitions (claim, record) are in side-effects.ts.
 */
import type { Queryable } from './queryable.ts';


/** Every status a ledger row can have (the check constraint of dsx.side_effects). */
export const SIDE_EFFECT_STATUSES = ['pending', 'executing', 'done', 'already_done', 'not_supported', 'skipped', 'failed'] as const;
export type SideEffectStatus = (typeof SIDE_EFFECT_STATUSES)[number];

/** One ledger row with what it was about. */
export interface SideEffectRow {
  id: number;
  kind: 'remediation' | 'notification';
  action: string;
  status: SideEffectStatus;
  outcome: string;
  object_identity: string;
  /** The notification channel's name (null for remediations, and for a channel deleted since). */
  channel: string | null;
  detail: string | null;
  attempts: number;
  /** The scope's name (null once the scope is deleted). */
  scope: string | null;
  full_scan_id: number | null;
  created_at: string;
  executed_at: string | null;
}

/** Side effects newest first, optionally of one full scan and/or one status. */
export async function sideEffectsList(
  db: Queryable,
  args: { fullScanId?: number; status?: SideEffectStatus; limit: number },
): Promise<SideEffectRow[]> {
  const { rows } = await db.query<SideEffectRow>(
    `select e.id::float8 as id, e.kind, e.action, e.status, e.outcome, r.object_identity, c.name as channel, e.detail,
            e.attempts, s.name as scope, r.full_scan_id::float8 as full_scan_id, e.created_at, e.executed_at
       from dsx.side_effects e
       join dsx.scan_results r on r.id = e.scan_result_id
       left join dsx.scopes s on s.id = r.scope_id
       left join dsx.notification_channels c on c.id = e.channel_id
      where ($1::bigint is null or r.full_scan_id = $1) and ($2::text is null or e.status = $2)
      order by e.id desc limit $3`,
    [args.fullScanId ?? null, args.status ?? null, args.limit],
  );
  return rows;
}
