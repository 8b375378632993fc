/**
 * ApplyRemediationJob and SendNotificationJob: execute one decision of the ledger, once. The ledger row
 * is locked while the action runs (a duplicate job skips it), the action itself is idempotent (delete
 * and move report `already_done` when repeated), and the execution is recorded in the same transaction
 * that held the lock. A webhook carries the decision's idempotency key, so a receiver can drop the
 * rare repeat after a crash between delivery and commit.
 */
import type pg from 'pg';
import { sideEffectClaim, sideEffectFinish, type ClaimedEffect } from '../db/sql/side-effects.ts';
import type { ActionResult } from '../connectors/types.ts';
import type { Job } from '../jobs/envelope.ts';
import { deliverWebhook, WebhookError } from '../notify/webhook.ts';
import type { PipelineContext } from './context.ts';
import type { Attempt } from './full-scan.ts';

async function perform(ctx: PipelineContext, e: ClaimedEffect): Promise<ActionResult> {
  if (e.kind === 'notification') {
    if (!e.channel_url || !e.channel_secret) return { status: 'not_supported', detail: 'the notification channel no longer exists' };
    const res = await deliverWebhook({
      url: e.channel_url,
      target: { allowedHosts: ctx.config.webhookAllowedHosts, allowPrivate: ctx.config.webhookAllowPrivate },
      secret: e.channel_secret,
      idempotencyKey: e.idempotency_key,
      body: {
        event: 'dsx.scan_result',
        idempotency_key: e.idempotency_key,
        outcome: e.outcome,
        reason: e.reason,
        object_identity: e.object_identity,
        integration_id: e.integration_id,
        scope_id: e.scope_id,
        full_scan_id: e.full_scan_id,
        source_type: e.source_type,
        scan_result_id: e.scan_result_id,
        correlation_id: e.correlation_id,
        finalized_at: e.finalized_at,
      },
    });
    return { status: 'done', detail: `HTTP ${res.status}` };
  }
  const connector = await ctx.connectors.get(e.integration_id);
  switch (e.action) {
    case 'delete':
      return connector.remove(e.object_identity);
    case 'move':
      return connector.quarantine(e.object_identity);
    case 'tag':
      return connector.tag(e.object_identity, { 'dsx-outcome': e.outcome, ...(e.reason ? { 'dsx-reason': e.reason } : {}) });
    default:
      return { status: 'not_supported', detail: `unknown action ${e.action}` };
  }
}

function retryable(err: unknown): boolean {
  if (err instanceof WebhookError) return err.retryable;
  const kind = (err as { kind?: string }).kind;
  return kind === undefined || kind === 'transient';
}

async function withClient<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    return await fn(client);
  } finally {
    client.release();
  }
}

/** Executes the side effect named by the job; returns the ledger status it ended in (or why it did nothing). */
export async function executeSideEffect(
  ctx: PipelineContext,
  job: Job<'apply-remediation'> | Job<'send-notification'>,
  attempt: Attempt,
): Promise<string> {
  const id = job.body.side_effect_id;
  let failure: unknown;
  const status = await withClient(ctx.pool, async (client) => {
    await client.query('begin');
    try {
      const effect = await sideEffectClaim(client, id);
      if (!effect) {
        await client.query('commit');
        return 'locked-elsewhere-or-missing';
      }
      if (effect.status !== 'pending') {
        await client.query('commit');
        return effect.status;
      }
      let result: ActionResult;
      try {
        result = await perform(ctx, effect);
      } catch (err) {
        await client.query('rollback');
        failure = err;
        return 'error';
      }
      await sideEffectFinish(client, id, result.status, result.detail ?? null);
      await client.query('commit');
      return result.status;
    } catch (err) {
      await client.query('rollback').catch(() => {});
      throw err;
    }
  });
  if (status !== 'error') return status;
  if (retryable(failure) && attempt.attempts < attempt.maxAttempts) throw failure;
  const message = failure instanceof Error ? failure.message : String(failure);
  await sideEffectFinish(ctx.pool, id, 'failed', message);
  return 'failed';
}
