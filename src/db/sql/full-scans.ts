/** Runtime SQL for full scans: start, cancel, read, and the enumeration-side transitions. */
import type { SkippedEntry } from '../../connectors/types.ts';
import type { Queryable } from './queryable.ts';


export interface StartResult {
  fullScanId: number;
  /** The same id as the bigint's text (exact beyond 2^53: what the GraphQL API returns). */
  fullScanRowId: string;
  alreadyActive: boolean;
  status: string;
}

/** Starts a full scan of the scope, or returns the active one (dsx.start_full_scan); requestedBy null: the connection's actor. */
export async function fullScanStart(db: Queryable, scopeId: number | string, requestedBy: string | null): Promise<StartResult> {
  const { rows } = await db.query<{ full_scan_id: string; already_active: boolean; status: string }>(
    'select (r).* from (select dsx.start_full_scan($1, $2) as r) s',
    [scopeId, requestedBy],
  );
  const r = rows[0]!;
  return { fullScanId: Number(r.full_scan_id), fullScanRowId: r.full_scan_id, alreadyActive: r.already_active, status: r.status };
}

/** Cancels a queued or running scan (dsx.cancel_full_scan); returns its status afterwards. requestedBy null: the connection's actor. */
export async function fullScanCancel(db: Queryable, id: number | string, mode: 'drain' | 'interrupt', requestedBy: string | null): Promise<string> {
  const { rows } = await db.query<{ status: string }>('select (dsx.cancel_full_scan($1, $2, $3)).status', [id, mode, requestedBy]);
  return rows[0]!.status;
}

/** What `scan status` shows. */
export interface FullScanProgress {
  id: number;
  scope_id: number;
  scope_name: string;
  status: string;
  discovered: number;
  finalized: number;
  pages: number;
  enumeration_exhausted: boolean;
  percent_finalized: number | null;
  elapsed_s: number | null;
  objects_per_s: number | null;
  eta_s: number | null;
  outcomes: Record<string, number>;
  cancel_mode: string | null;
  error: string | null;
  requested_by: string;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  /** The last listing error while it keeps failing, with its attempt and the next retry. */
  enumeration_error: string | null;
  enumeration_attempt: number | null;
  enumeration_max_attempts: number | null;
  enumeration_retry_at: string | null;
  /** The scanner as the live workers see it: ok, unavailable or unauthorized (null: no worker reports). */
  scanner_state: string | null;
  scanner_since: string | null;
  scanner_error: string | null;
  /** Entries enumeration met and did not scan, in all and per reason (dsx.skipped_entries lists them). */
  skipped: number;
  skipped_reasons: Record<SkipReason, number>;
  /** Set when directories could not be read: how many, the first three, "(not scanned)". */
  enumeration_warning: string | null;
  /** The scan's side effects (remediations, notifications) per ledger status. */
  side_effects: Record<string, number>;
  /** The first side effect that failed, with why; null when none did. */
  first_side_effect_failure: SideEffectFailure | null;
  /** Objects enumerated and not yet finalized; the admission window (null: unbounded); whether listing waits for room. */
  in_flight: number;
  scan_window: number | null;
  enumeration_paused: boolean;
}

/** A failed side effect as `scan status` names it. */
export interface SideEffectFailure {
  id: number;
  kind: string;
  action: string;
  object_identity: string;
  channel: string | null;
  detail: string | null;
  executed_at: string | null;
}

/**
 * One event of the fullScanProgress subscription (its GraphQL field names), read from
 * dsx.full_scan_progress under the caller's role; undefined for a scan the caller cannot see.
 */
export interface FullScanProgressEvent {
  fullScanId: string;
  status: string;
  finishedAt: string | null;
  [field: string]: unknown;
}

/** The subscription's view of one scan (graphql/plugins/subscriptions.ts). */
export async function fullScanProgressEventGet(db: Queryable, id: string): Promise<FullScanProgressEvent | undefined> {
  const { rows } = await db.query<FullScanProgressEvent>(
    `  select id::text as "fullScanId", status, discovered::float8 as discovered, finalized::float8 as finalized,
         enumeration_exhausted as "enumerationExhausted", percent_finalized::float8 as "percentFinalized",
         objects_per_s::float8 as "objectsPerS", eta_s::float8 as "etaS", outcomes, cancel_mode as "cancelMode",
         error, started_at::text as "startedAt", finished_at::text as "finishedAt",
         enumeration_error as "enumerationError", enumeration_attempt as "enumerationAttempt",
         enumeration_max_attempts as "enumerationMaxAttempts", enumeration_retry_at::text as "enumerationRetryAt",
         scanner_state as "scannerState", scanner_since::text as "scannerSince", scanner_error as "scannerError",
         skipped::float8 as skipped, skipped_reasons as "skippedReasons", enumeration_warning as "enumerationWarning"
    from dsx.full_scan_progress where id = $1`,
    [id],
  );
  return rows[0];
}

/** One scan's progress row from dsx.full_scan_progress, or null. */
export async function fullScanProgressGet(db: Queryable, id: number): Promise<FullScanProgress | null> {
  const { rows } = await db.query(
    `select id::float8 as id, scope_id::float8 as scope_id, scope_name, status, discovered::float8 as discovered,
            finalized::float8 as finalized, pages, enumeration_exhausted, percent_finalized::float8 as percent_finalized,
            elapsed_s::float8 as elapsed_s, objects_per_s::float8 as objects_per_s, eta_s::float8 as eta_s, outcomes,
            cancel_mode, error, requested_by, created_at, started_at, finished_at, enumeration_error,
            enumeration_attempt, enumeration_max_attempts, enumeration_retry_at, scanner_state, scanner_since, scanner_error,
            enumeration_attempt, enumeration_max_attempts, enumeration_retry_at, skipped::float8 as skipped,
            skipped_reasons, enumeration_warning, side_effects, first_side_effect_failure,
            in_flight::float8 as in_flight, scan_window, enumeration_paused
       from dsx.full_scan_progress where id = $1`,
    [id],
  );
  return (rows[0] as FullScanProgress | undefined) ?? null;
}

/**
 * Whether a scan has finished (completed or failed, or canceled and drained); null for an unknown id.
 * Cheap to poll: PostgreSQL inlines the view and computes only the column asked for, not the side
 * effect counts.
 */
export async function fullScanFinished(db: Queryable, id: number): Promise<boolean | null> {
  const { rows } = await db.query<{ finished: boolean }>('select finished_at is not null as finished from dsx.full_scan_progress where id = $1', [id]);
  return rows[0]?.finished ?? null;
}

/** Why enumeration skips an entry (the check constraint of dsx.skipped_entries), in the order shown. */
export const SKIP_REASONS = ['symlink', 'special_file', 'unreadable_directory', 'directory_marker', 'internal'] as const satisfies readonly SkippedEntry['reason'][];
export type SkipReason = (typeof SKIP_REASONS)[number];

/** One row of dsx.skipped_entries, as `scan skipped` lists it. */
export interface SkippedEntryRow {
  identity: string;
  reason: SkipReason;
  detail: string | null;
  page_no: number;
  recorded_at: string;
}

/** A scan's skipped entries in the order enumeration met them, optionally of one reason. */
export async function fullScanSkippedList(
  db: Queryable,
  args: { id: number; reason?: SkipReason; limit: number },
): Promise<SkippedEntryRow[]> {
  const { rows } = await db.query<SkippedEntryRow>(
    `select object_identity as identity, reason, detail, page_no, recorded_at
       from dsx.skipped_entries
      where full_scan_id = $1 and ($2::text is null or reason = $2)
      order by id limit $3`,
    [args.id, args.reason ?? null, args.limit],
  );
  return rows;
}

/** What the enumeration worker needs to know about a scan and its scope. */
export interface EnumerationTarget {
  status: string;
  pages: number;
  scopeId: number;
  root: string;
  includeGlobs: string[];
  excludeGlobs: string[];
  integrationId: number;
}

export async function fullScanEnumerationTarget(db: Queryable, id: number): Promise<EnumerationTarget | null> {
  const { rows } = await db.query(
    `select f.status, f.pages, s.id::float8 as scope_id, s.root, s.include_globs, s.exclude_globs,
            s.integration_id::float8 as integration_id
       from dsx.full_scans f join dsx.scopes s on s.id = f.scope_id where f.id = $1`,
    [id],
  );
  const r = rows[0];
  if (!r) return null;
  return {
    status: r.status,
    pages: r.pages,
    scopeId: r.scope_id,
    root: r.root,
    includeGlobs: r.include_globs,
    excludeGlobs: r.exclude_globs,
    integrationId: r.integration_id,
  };
}

/** FullScanScopeJob transition (dsx_private.begin_full_scan). */
export async function fullScanBegin(db: Queryable, id: number): Promise<string> {
  const { rows } = await db.query<{ r: string }>('select dsx_private.begin_full_scan($1) as r', [id]);
  return rows[0]!.r;
}

/** One object as recorded in a page. */
export interface PageObject {
  identity: string;
  size: number | null;
  etag: string | null;
  mtime: string | null;
  version_id?: string | null;
}

/**
 * Records a page with its scan jobs, counters, cursor and next page job, and the entries it met and did
 * not return as objects (dsx_private.record_page): all in one transaction, so a page delivered twice
 * records its skipped entries once.
 */
export async function fullScanRecordPage(
  db: Queryable,
  args: {
    id: number;
    pageNo: number;
    objects: PageObject[];
    nextCursor: string | null;
    parentJobId: string;
    scanMaxAttempts: number;
    skipped?: SkippedEntry[];
    /** The admission window (objects enumerated but not finalized, at most; unset: unbounded) and the page size it makes room for. */
    window?: number | null;
    pageSize?: number | null;
  },
): Promise<{ status: string; new?: number }> {
  const { rows } = await db.query<{ r: { status: string; new?: number } }>(
    'select dsx_private.record_page($1, $2, $3::jsonb, $4, $5, $6, $7::jsonb, $8, $9) as r',
    [
      args.id,
      args.pageNo,
      JSON.stringify(args.objects),
      args.nextCursor,
      args.parentJobId,
      args.scanMaxAttempts,
      JSON.stringify(args.skipped ?? []),
      args.window ?? null,
      args.pageSize ?? null,
    ],
  );
  return rows[0]!.r;
}

/** Records a listing failure that will be retried (dsx_private.note_enumeration_error). */
export async function fullScanNoteEnumerationError(
  db: Queryable,
  args: { id: number; error: string; attempt: number; maxAttempts: number; retryAt: Date },
): Promise<void> {
  await db.query('select dsx_private.note_enumeration_error($1, $2, $3, $4, $5)', [args.id, args.error, args.attempt, args.maxAttempts, args.retryAt]);
}

/** Ends a scan whose enumeration cannot go on (dsx_private.fail_full_scan). */
export async function fullScanFail(db: Queryable, id: number, error: string): Promise<void> {
  await db.query('select dsx_private.fail_full_scan($1, $2)', [id, error]);
}

/** One result of the invariant checker (dsx.verify_full_scan). */
export interface VerifyCheck {
  check_name: string;
  ok: boolean;
  detail: string;
}

export async function fullScanVerify(db: Queryable, id: number): Promise<VerifyCheck[]> {
  const { rows } = await db.query<VerifyCheck>('select check_name, ok, detail from dsx.verify_full_scan($1)', [id]);
  return rows;
}
