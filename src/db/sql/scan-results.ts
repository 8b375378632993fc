/** Runtime SQL for scan results: the scan preflight, the scanned mark, and finalization, all batched. */
import type { Queryable } from './queryable.ts';


/** State of each result row ('pending' | 'scanned' | 'finalized'), or 'missing'. */
export async function scanResultsStates(db: Queryable, keys: string[]): Promise<string[]> {
  const { rows } = await db.query<{ idempotency_key: string; state: string }>(
    'select idempotency_key, state from dsx_private.scan_result_states($1)',
    [keys],
  );
  const byKey = new Map(rows.map((r) => [r.idempotency_key, r.state]));
  return keys.map((k) => byKey.get(k) ?? 'missing');
}

export interface ScannedItem {
  idempotency_key: string;
  attempts: number;
  /** The FinalizeScanObjectJob payload. */
  payload: unknown;
}

/** Marks rows scanned and enqueues their finalize jobs in one transaction; 'queued' or the row's state. */
export async function scanResultsRecordScanned(db: Queryable, items: ScannedItem[]): Promise<string[]> {
  const { rows } = await db.query<{ idempotency_key: string; status: string }>(
    'select idempotency_key, status from dsx_private.record_scans($1::jsonb)',
    [JSON.stringify(items)],
  );
  const byKey = new Map(rows.map((r) => [r.idempotency_key, r.status]));
  return items.map((i) => byKey.get(i.idempotency_key) ?? 'missing');
}

export interface FinalizeItem {
  idempotency_key: string;
  outcome: string;
  reason: string | null;
  raw_reason: string | null;
  raw_result: unknown;
  normalization_version: number;
  attempts: number;
  fetch_ms: number | null;
  scan_ms: number | null;
  size: number | null;
  etag: string | null;
  mtime: string | null;
  version_id: string | null;
  job_id: string;
}

/** Finalizes a batch (dsx_private.finalize_results): 'finalized' | 'duplicate' | 'missing' per item. */
export async function scanResultsFinalize(db: Queryable, items: FinalizeItem[]): Promise<string[]> {
  const { rows } = await db.query<{ idempotency_key: string; status: string }>(
    'select idempotency_key, status from dsx_private.finalize_results($1::jsonb)',
    [JSON.stringify(items)],
  );
  const byKey = new Map(rows.map((r) => [r.idempotency_key, r.status]));
  return items.map((i) => byKey.get(i.idempotency_key) ?? 'missing');
}

/** Puts a scan job back in the queue for `runAt` (dsx_private.defer_scan_job): the scanner is unavailable. */
export async function scanJobDefer(db: Queryable, payload: unknown, runAt: Date, maxAttempts: number): Promise<void> {
  await db.query('select dsx_private.defer_scan_job($1::json, $2, $3)', [JSON.stringify(payload), runAt, maxAttempts]);
}
