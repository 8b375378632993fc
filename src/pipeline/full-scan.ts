/**
 * Full scan, enumeration side: the FullScanScopeJob starts the scan; each EnumerateScopePageJob lists
 * one page from the connector and records it (objects, their scan jobs, counters, cursor and the next
 * page job) in one transaction.
 */
import { ConnectorError, type SkippedEntry } from '../connectors/types.ts';
import { fullScanBegin, fullScanEnumerationTarget, fullScanFail, fullScanNoteEnumerationError, fullScanRecordPage } from '../db/sql/full-scans.ts';
import type { Job } from '../jobs/envelope.ts';
import type { PipelineContext } from './context.ts';
import { scopeFilter, type ObjectFilter } from './filters.ts';

/** Objects in the first enumeration page of a scan. */
export const FIRST_PAGE_SIZE = 50;

/** Attempt bookkeeping from graphile-worker. */
export interface Attempt {
  attempts: number;
  maxAttempts: number;
  /** graphile-worker's id of the job (stable across its retries). */
  jobId?: string;
}

export async function beginFullScan(ctx: PipelineContext, job: Job<'full-scan-scope'>): Promise<string> {
  return fullScanBegin(ctx.pool, job.body.full_scan_id);
}

/**
 * graphile-worker's delay before the next attempt of a job that failed its n-th attempt: exp(min(n, 10))
 * seconds (its default backoff; about 2.7 s, 7.4 s, 20 s, 55 s, 2.5 min, 6.7 min, 18 min, ...).
 */
export function retryDelayMs(attempts: number): number {
  return Math.round(Math.exp(Math.min(attempts, 10)) * 1000);
}

/**
 * Which skipped entries a scan records: those its include/exclude globs would have scanned had they
 * been objects (an excluded symlink was never going to be scanned), and every unreadable directory and
 * connector-internal entry whatever the globs say: the contents of an unreadable directory are
 * unknown, so no glob can tell that nothing in it was wanted, and an internal entry (the S3
 * connector's one entry for a whole quarantine area, say) is not named by the scope's globs.
 */
export function reportable(keep: ObjectFilter): (s: SkippedEntry) => boolean {
  return (s) => s.reason === 'unreadable_directory' || s.reason === 'internal' || keep(s.identity);
}

/** Lists and records one page. Returns what happened ('recorded', 'duplicate', 'canceled', 'failed', ...). */
export async function enumeratePage(ctx: PipelineContext, job: Job<'enumerate-scope-page'>, attempt: Attempt): Promise<string> {
  const { full_scan_id: id, page_no: pageNo, cursor } = job.body;
  const target = await fullScanEnumerationTarget(ctx.pool, id);
  if (!target) return 'missing';
  if (target.status !== 'running') return target.status; // canceled or failed: no new pages
  if (target.pages > pageNo) return 'duplicate'; // this page was recorded before a crash or retry
  let page;
  try {
    const connector = await ctx.connectors.get(target.integrationId);
    // The first page is small so that scanning starts within milliseconds of the request; the rest
    // use the configured size (fewer, larger transactions).
    const size = pageNo === 0 ? Math.min(FIRST_PAGE_SIZE, ctx.config.pageSize) : ctx.config.pageSize;
    page = await connector.listPage(target.root, cursor, size);
  } catch (err) {
    const maxAttempts = Math.min(attempt.maxAttempts, ctx.config.enumerationMaxAttempts);
    const final = (err instanceof ConnectorError && !err.retryable) || attempt.attempts >= maxAttempts;
    const message = `enumeration of page ${pageNo} failed: ${(err as Error).message}`;
    if (!final) {
      // Shown by `scan status` and the progress subscription until a page is recorded again.
      const retryAt = new Date(Date.now() + retryDelayMs(attempt.attempts));
      ctx.log.warn({ full_scan_id: id, page_no: pageNo, attempt: attempt.attempts, max_attempts: maxAttempts, retry_at: retryAt, err: message }, 'listing failed; retrying');
      await fullScanNoteEnumerationError(ctx.pool, { id, error: message, attempt: attempt.attempts, maxAttempts, retryAt }).catch(() => {});
      throw err;
    }
    ctx.log.warn({ full_scan_id: id, page_no: pageNo, err: message }, 'enumeration cannot go on: the full scan ends failed');
    await fullScanFail(ctx.pool, id, message);
    return 'failed';
  }
  const keep = scopeFilter(target.root, target.includeGlobs, target.excludeGlobs);
  const objects = page.objects
    .filter((o) => keep(o.identity))
    .map((o) => ({ identity: o.identity, size: o.size, etag: o.etag ?? null, mtime: o.mtime ?? null, version_id: o.versionId ?? null }));
  const skipped = (page.skipped ?? []).filter(reportable(keep));
  const r = await fullScanRecordPage(ctx.pool, {
    id,
    pageNo,
    objects,
    nextCursor: page.nextCursor,
    parentJobId: job.job_id,
    scanMaxAttempts: ctx.config.scanMaxAttempts,
    skipped,
    window: ctx.config.scanWindow,
    pageSize: ctx.config.pageSize,
  });
  // The page just queued its scan jobs: the job fetch needs planner statistics that cover them.
  if (r.status === 'recorded') await ctx.queueStats.refresh();
  return r.status;
}
