/**
 * ApplyRemediationJob and SendNotificationJob: execute one decision of the ledger, once. The job claims
 * the ledger row (a short transaction; a duplicate job leaves a claimed row to its holder), performs the
 * action with nothing held, and records the result (another short transaction). The actions are
 * idempotent (delete and move report `already_done` when repeated) and a webhook carries the decision's
 * idempotency key, so a receiver can drop the rare repeat after a crash between delivery and record.
 */
import { sideEffectClaim, sideEffectFinish, type ClaimedEffect } from '../db/sql/side-effects.ts';
import { ConnectorError, type ActionResult } from '../connectors/types.ts';
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
      return connector.remove(e.object_identity, { etag: e.etag, versionId: e.version_id });
    case 'move':
      return connector.quarantine(e.object_identity, { etag: e.etag, versionId: e.version_id, key: e.idempotency_key });
    case 'tag':
      return connector.tag(e.object_identity, verdictTags(e), { etag: e.etag, versionId: e.version_id });
    default:
      return { status: 'not_supported', detail: `unknown action ${e.action}` };
  }
}

/**
 * The verdict tags of an object, merged by the connector into its own tags: `dsx-verdict` (the outcome)
 * and `dsx-scanned-at` (when the verdict was recorded, ISO-8601 UTC). A bucket policy or an ABAC
 * condition can then deny reads of anything not tagged `dsx-verdict=clean` (README).
 */
export function verdictTags(e: Pick<ClaimedEffect, 'outcome' | 'finalized_at'>): Record<string, string> {
  return { 'dsx-verdict': e.outcome, 'dsx-scanned-at': new Date(e.finalized_at).toISOString() };
}

function retryable(err: unknown): boolean {
  if (err instanceof WebhookError) return err.retryable;
  if (err instanceof ConnectorError) return err.retryable;
  return true; // an unexpected error (a bug, a dropped connection): retried, then recorded as failed
}

/** A pause in tests between performing an effect and recording it (a crash there is what the claim covers). */
export interface SideEffectHooks {
  afterPerform?(effectId: number): Promise<void> | void;
}

/**
 * Executes the side effect named by the job; returns the ledger status it ended in (or why it did
 * nothing). Claim (commit), perform, record (commit): no transaction or pooled connection is held while
 * a webhook is delivered or a file moved, so a slow receiver cannot starve the pool that scanning and
 * finalization share. A retry of the same job (after a failure, or after a crash between performing and
 * recording) continues its own claim and performs the action again: delete and move are idempotent,
 * and a webhook carries the decision's idempotency key so the receiver can drop the repeat.
 */
export async function executeSideEffect(
  ctx: PipelineContext,
  job: Job<'apply-remediation'> | Job<'send-notification'>,
  attempt: Attempt & { jobId: string },
  hooks: SideEffectHooks = {},
): Promise<string> {
  const id = job.body.side_effect_id;
  const claimed = await sideEffectClaim(ctx.pool, id, attempt.jobId);
  if (claimed.claim !== 'claimed') return claimed.claim === 'finished' ? (claimed.status ?? 'finished') : claimed.claim;
  let result: ActionResult;
  try {
    result = await perform(ctx, claimed.effect);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const e = claimed.effect;
    // Operators find failed notifications and remediations in the worker's log, not only in the ledger.
    const fields = {
      job_id: job.job_id, correlation_id: job.correlation_id, side_effect_id: id, kind: e.kind, action: e.action,
      object_identity: e.object_identity, full_scan_id: e.full_scan_id, scope_id: e.scope_id,
      attempt: attempt.attempts, max_attempts: attempt.maxAttempts, err: message,
    };
    if (retryable(err) && attempt.attempts < attempt.maxAttempts) {
      ctx.log.warn(fields, `${e.kind} ${e.action} failed; retrying`);
      throw err;
    }
    ctx.log.warn(fields, `${e.kind} ${e.action} failed: recorded as failed (list them: dsx-connect effects --status failed)`);
    await sideEffectFinish(ctx.pool, id, attempt.jobId, 'failed', message);
    return 'failed';
  }
  await hooks.afterPerform?.(id);
  await sideEffectFinish(ctx.pool, id, attempt.jobId, result.status, result.detail ?? null);
  return result.status;
}
