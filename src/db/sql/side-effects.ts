/** Runtime SQL for the side-effect ledger: claim one effect for a job, record its execution. */
import type { Queryable } from './queryable.ts';


/** A claimed side effect with what is needed to execute it. */
export interface ClaimedEffect {
  id: number;
  kind: 'remediation' | 'notification';
  action: 'tag' | 'move' | 'delete' | 'webhook';
  idempotency_key: string;
  outcome: string;
  reason: string | null;
  scan_result_id: number;
  object_identity: string;
  /** The etag recorded with the scanned version (null where the store has none). */
  etag: string | null;
  /** The scanned version, where the store keeps versions. */
  version_id: string | null;
  integration_id: number;
  scope_id: number;
  full_scan_id: number | null;
  source_type: string;
  correlation_id: string;
  finalized_at: string;
  channel_url: string | null;
  channel_secret: string | null;
}

/**
 * What claiming gave: the effect to execute now, or why not (`held` by another job that still exists,
 * `finished` before with `status`, `missing`).
 */
export type Claim = { claim: 'claimed'; effect: ClaimedEffect } | { claim: 'held' | 'finished' | 'missing'; status: string | null };

/**
 * Claims the effect for graphile-worker job `jobId` (dsx_private.claim_side_effect), in its own short
 * transaction: the action then runs with no transaction or row lock held.
 */
export async function sideEffectClaim(db: Queryable, id: number, jobId: string): Promise<Claim> {
  const { rows } = await db.query(
    `select claim, id::float8 as id, kind, action, status, idempotency_key, outcome, reason,
            scan_result_id::float8 as scan_result_id, object_identity, etag, version_id, integration_id::float8 as integration_id,
            scope_id::float8 as scope_id, full_scan_id::float8 as full_scan_id, source_type, correlation_id, finalized_at,
            channel_url, channel_secret
       from dsx_private.claim_side_effect($1, $2)`,
    [id, jobId],
  );
  const r = rows[0] as (ClaimedEffect & { claim: Claim['claim']; status: string | null }) | undefined;
  if (!r) return { claim: 'missing', status: null };
  if (r.claim !== 'claimed') return { claim: r.claim, status: r.status };
  const { claim: _, status: __, ...effect } = r;
  return { claim: 'claimed', effect };
}

/** Records the execution once, for the claiming job (dsx_private.finish_side_effect); false when already recorded. */
export async function sideEffectFinish(db: Queryable, id: number, jobId: string, status: string, detail: string | null): Promise<boolean> {
  const { rows } = await db.query<{ r: boolean }>('select dsx_private.finish_side_effect($1, $2, $3, $4) as r', [id, jobId, status, detail]);
  return rows[0]!.r;
}
