/** Runtime SQL for the side-effect ledger: claim one pending effect, record its execution. */
import type pg from 'pg';

/** A pending side effect with what is needed to execute it. */
export interface ClaimedEffect {
  id: number;
  kind: 'remediation' | 'notification';
  action: 'tag' | 'move' | 'delete' | 'webhook';
  status: string;
  idempotency_key: string;
  outcome: string;
  reason: string | null;
  scan_result_id: number;
  object_identity: string;
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
 * Locks the effect row for the duration of the caller's transaction (SKIP LOCKED: null when another
 * worker holds it, which then executes it) and returns it with its object and channel.
 */
export async function sideEffectClaim(client: pg.PoolClient, id: number): Promise<ClaimedEffect | null> {
  const { rows } = await client.query(
    `select e.id::float8 as id, e.kind, e.action, e.status, e.idempotency_key, e.outcome, r.reason,
            r.id::float8 as scan_result_id, r.object_identity, r.integration_id::float8 as integration_id,
            r.scope_id::float8 as scope_id, r.full_scan_id::float8 as full_scan_id, r.source_type,
            r.correlation_id, r.finalized_at, c.url as channel_url, cs.secret as channel_secret
       from dsx.side_effects e
       join dsx.scan_results r on r.id = e.scan_result_id
       left join dsx.notification_channels c on c.id = e.channel_id
       left join dsx_private.notification_channel_secrets cs on cs.channel_id = e.channel_id
      where e.id = $1
        for update of e skip locked`,
    [id],
  );
  return (rows[0] as ClaimedEffect | undefined) ?? null;
}

/** Records the execution once (dsx_private.finish_side_effect); false when it was already recorded. */
export async function sideEffectFinish(db: Pick<pg.Pool, 'query'>, id: number, status: string, detail: string | null): Promise<boolean> {
  const { rows } = await db.query<{ r: boolean }>('select dsx_private.finish_side_effect($1, $2, $3) as r', [id, status, detail]);
  return rows[0]!.r;
}
