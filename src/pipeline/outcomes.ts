/**
 * Outcome normalization: DSXA verdicts, and failures that kept an object from getting one, become the
 * outcomes policy is evaluated on. Every mapping is a plain table below; NORMALIZATION_VERSION is
 * stored with every result and must be bumped whenever a table changes meaning.
 */
import type { DsxaResponse } from '../dsxa/types.ts';

/** What became of one object. */
export type Outcome = 'clean' | 'malicious' | 'unable_to_scan' | 'unsupported_type' | 'fetch_failed' | 'timeout' | 'policy_blocked' | 'canceled';

/** Every outcome, in display order. */
export const OUTCOMES: readonly Outcome[] = ['clean', 'malicious', 'unable_to_scan', 'unsupported_type', 'fetch_failed', 'timeout', 'policy_blocked', 'canceled'];

/** Version of the tables below, stored with each result. */
export const NORMALIZATION_VERSION = 1;

/** An outcome, its normalized reason (a stable snake_case code) and the raw text it came from. */
export interface Normalized {
  outcome: Outcome;
  reason: string | null;
  rawReason: string | null;
}

/**
 * Where a verdict's normalized reason comes from: none; the threat type, lowercased; the REASON_PATTERNS
 * table applied to `verdict_details.reason`; or a fixed code.
 */
export type ReasonSource = 'none' | 'threat_type' | 'reason_table' | { fixed: string };

/** DSXA verdict -> outcome and reason source. A verdict not listed: unable_to_scan / UNKNOWN_VERDICT. */
export const VERDICT_TABLE: Readonly<Record<string, { outcome: Outcome; reason: ReasonSource }>> = {
  Benign: { outcome: 'clean', reason: 'none' },
  Malicious: { outcome: 'malicious', reason: 'threat_type' },
  'Unsupported File Type': { outcome: 'unsupported_type', reason: 'none' },
  'Not Scanned': { outcome: 'unable_to_scan', reason: 'reason_table' },
  Unknown: { outcome: 'unable_to_scan', reason: 'reason_table' },
  'Non Compliant': { outcome: 'unable_to_scan', reason: 'reason_table' },
  Scanning: { outcome: 'unable_to_scan', reason: { fixed: 'scan_pending' } },
};

/** Reason of a verdict string this version does not know. */
export const UNKNOWN_VERDICT = 'unknown_verdict';

/**
 * Raw `verdict_details.reason` -> normalized reason; case-insensitive, first match wins (so the more
 * specific patterns come first). No match: UNKNOWN_REASON; no reason at all: NO_REASON.
 */
export const REASON_PATTERNS: readonly (readonly [pattern: RegExp, reason: string])[] = [
  [/encrypt|password/i, 'encrypted_file'],
  [/zip.?bomb|decompression bomb/i, 'zip_bomb'],
  [/nest/i, 'archive_nesting_limit'],
  [/archive.*too (large|big)|container.*too (large|big)/i, 'archive_too_large'],
  [/file size too large|file too (large|big)/i, 'file_too_large'],
  [/file type.*not supported|unsupported file type/i, 'file_type_not_supported'],
  [/corrupt|malformed|damaged/i, 'corrupted_file'],
  [/initializ/i, 'system_initializing'],
  [/invalid protected entity/i, 'invalid_protected_entity'],
  [/scan(ning)? error|error (while|during) scan/i, 'scan_error'],
  [/^\s*other\s*:/i, 'other'],
];

/** Reason of a raw reason no pattern matches. */
export const UNKNOWN_REASON = 'unknown_reason';
/** Reason when DSXA gave none. */
export const NO_REASON = 'no_reason';

/** Why an object got no verdict: the stage that failed and how. */
export type ScanFailure =
  | { stage: 'fetch'; kind: 'not_found' | 'permission' | 'escape' | 'transient' | 'throttled' | 'invalid' | 'unavailable' | 'configuration'; message: string }
  | { stage: 'scanner'; kind: 'timeout' | 'unavailable' | 'auth' | 'bad_request' | 'protocol'; message: string }
  | { stage: 'policy'; kind: 'size_cap' | 'excluded_type'; message: string }
  | { stage: 'cancel'; kind: 'interrupted'; message: string };

type FailureTable = { readonly [F in ScanFailure as F['stage']]: { readonly [K in F['kind']]: readonly [outcome: Outcome, reason: string] } };

/** Failure stage and kind -> outcome and reason (exhaustive: the compiler checks every kind is here). */
export const FAILURE_TABLE: FailureTable = {
  fetch: {
    not_found: ['fetch_failed', 'not_found'],
    permission: ['fetch_failed', 'permission'],
    escape: ['fetch_failed', 'outside_scope'],
    transient: ['fetch_failed', 'transient_exhausted'],
    throttled: ['fetch_failed', 'throttled_exhausted'],
    configuration: ['fetch_failed', 'connector_misconfigured'],
    invalid: ['fetch_failed', 'invalid_identity'],
    unavailable: ['fetch_failed', 'connector_unavailable'],
  },
  scanner: {
    timeout: ['timeout', 'scanner_timeout'],
    unavailable: ['unable_to_scan', 'scanner_unavailable'],
    auth: ['unable_to_scan', 'scanner_auth_failed'],
    bad_request: ['unable_to_scan', 'scanner_rejected'],
    protocol: ['unable_to_scan', 'scan_error'],
  },
  policy: {
    size_cap: ['policy_blocked', 'size_cap'],
    excluded_type: ['policy_blocked', 'excluded_type'],
  },
  cancel: {
    interrupted: ['canceled', 'interrupted'],
  },
};

/** Reason of a failure (stage, kind) this version does not know (e.g. from an old job payload). */
export const UNKNOWN_FAILURE = 'unknown_failure';

/** Normalized reason of a raw DSXA reason text. */
export function normalizeReason(raw: string | null | undefined): string {
  if (raw === null || raw === undefined || raw.trim() === '') return NO_REASON;
  return REASON_PATTERNS.find(([pattern]) => pattern.test(raw))?.[1] ?? UNKNOWN_REASON;
}

/**
 * The outcome of a DSXA verdict. `rawReason` is `verdict_details.reason` as received (for a verdict
 * this version does not know and no reason, the verdict string itself). The HTTP status does not
 * change the mapping: a 400 carrying a verdict is normalized by its verdict and reason.
 */
export function normalizeVerdict(_httpStatus: number, response: DsxaResponse): Normalized {
  const rawReason = response.verdict_details?.reason ?? null;
  const rule = VERDICT_TABLE[response.verdict];
  if (rule === undefined) return { outcome: 'unable_to_scan', reason: UNKNOWN_VERDICT, rawReason: rawReason ?? response.verdict };
  const src = rule.reason;
  let reason: string | null;
  if (src === 'none') reason = null;
  else if (src === 'threat_type') reason = response.verdict_details?.threat_type?.toLowerCase() || null;
  else if (src === 'reason_table') reason = normalizeReason(rawReason);
  else reason = src.fixed;
  return { outcome: rule.outcome, reason, rawReason };
}

/** The outcome of a failure; `rawReason` is its message. */
export function normalizeFailure(f: ScanFailure): Normalized {
  const byKind = (FAILURE_TABLE as Record<string, Record<string, readonly [Outcome, string]> | undefined>)[f.stage];
  const hit = byKind && Object.hasOwn(byKind, f.kind) ? byKind[f.kind] : undefined;
  if (hit === undefined) return { outcome: 'unable_to_scan', reason: UNKNOWN_FAILURE, rawReason: f.message };
  return { outcome: hit[0], reason: hit[1], rawReason: f.message };
}
