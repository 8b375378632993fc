/**
 * `scan start|status|cancel` over the GraphQL API, and following a scan live through the
 * fullScanProgress subscription. Results come back in the shapes the direct-database commands use
 * (FullScanProgress, StartResult), so both paths print the same text and JSON.
 */
import type { Command } from 'commander';
import type { Config } from '../config.ts';
import type { FullScanProgress, StartResult } from '../db/sql/full-scans.ts';
import { ApiError, apiRequest, apiSubscribe, defaultApiUrl, operation, type ApiTarget } from './api-client.ts';
import { UsageError } from './common.ts';
import type { ProgressEvent, ProgressView } from './scan-progress.ts';
import { readSecretOption } from './secrets.ts';
import { onStopSignal, type StopSignal } from './signals.ts';

/** The options that send a command over the API. */
export interface ApiOptions {
  api?: boolean;
  apiUrl?: string;
  /** `-`: read the token from stdin (a literal token is refused). */
  token?: string;
  tokenFile?: string;
}

/** Adds --api, --api-url, --token - and --token-file to a command. */
export function withApiOptions(cmd: Command): Command {
  return cmd
    .option('--api', 'go through the GraphQL API (at DSX_API_URL, default http://localhost:$PORT/graphql) instead of the database')
    .option('--api-url <url>', 'GraphQL endpoint of a DSX-Connect server (implies --api; default DSX_API_URL)')
    .option('--token <->', 'read the bearer token for the API (an API token or a JWT) from stdin: "-" (implies --api; default DSX_API_TOKEN)')
    .option('--token-file <file>', 'read the bearer token for the API from this file (implies --api)');
}

/**
 * The API to use, or undefined to go to the database directly. The rule: a command goes over the API
 * when it is asked for on the command line (--api, --api-url, --token, --token-file, --follow) or
 * DSX_API_URL is set. The token comes from `--token -` (stdin), `--token-file`, else DSX_API_TOKEN.
 */
export async function apiTarget(o: ApiOptions & { follow?: boolean }, config: Config): Promise<ApiTarget | undefined> {
  const fromCommandLine = await readSecretOption({ flag: '--token', value: o.token, fileFlag: '--token-file', file: o.tokenFile, envName: 'DSX_API_TOKEN' });
  if (!(o.api || o.follow || o.apiUrl !== undefined || fromCommandLine !== undefined || config.apiUrl)) return undefined;
  const url = o.apiUrl ?? config.apiUrl ?? defaultApiUrl(config.port);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`--api-url / DSX_API_URL must be an http(s) URL (got ${JSON.stringify(url)})`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new UsageError(`--api-url / DSX_API_URL must be an http(s) URL (got ${JSON.stringify(url)})`);
  return { url, token: fromCommandLine ?? config.apiToken };
}

const num = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
const date = (v: unknown) => (v === null || v === undefined ? null : (new Date(String(v)) as unknown as string));

/** A full scan's progress row through the API, or null if there is no such scan. */
export async function apiFullScanProgress(target: ApiTarget, id: number): Promise<FullScanProgress | null> {
  const data = await apiRequest<{ fullScanProgressByRowId: Record<string, unknown> | null }>(target, operation('full-scan-status'), { id: String(id) });
  const p = data.fullScanProgressByRowId;
  if (!p) return null;
  return {
    id: Number(p.rowId),
    scope_id: Number(p.scopeId),
    scope_name: String(p.scopeName),
    status: String(p.status),
    discovered: Number(p.discovered),
    finalized: Number(p.finalized),
    pages: Number(p.pages),
    enumeration_exhausted: Boolean(p.enumerationExhausted),
    percent_finalized: num(p.percentFinalized),
    elapsed_s: num(p.elapsedS),
    objects_per_s: num(p.objectsPerS),
    eta_s: num(p.etaS),
    outcomes: p.outcomes as Record<string, number>,
    cancel_mode: (p.cancelMode as string | null) ?? null,
    error: (p.error as string | null) ?? null,
    requested_by: String(p.requestedBy),
    // Dates, as the database path returns them, so --json prints the same ISO strings either way.
    created_at: date(p.createdAt)!,
    started_at: date(p.startedAt),
    finished_at: date(p.finishedAt),
    enumeration_error: (p.enumerationError as string | null) ?? null,
    enumeration_attempt: num(p.enumerationAttempt),
    enumeration_max_attempts: num(p.enumerationMaxAttempts),
    enumeration_retry_at: date(p.enumerationRetryAt),
    scanner_state: (p.scannerState as string | null) ?? null,
    scanner_since: date(p.scannerSince),
    scanner_error: (p.scannerError as string | null) ?? null,
    skipped: Number(p.skipped),
    skipped_reasons: p.skippedReasons as FullScanProgress['skipped_reasons'],
    enumeration_warning: (p.enumerationWarning as string | null) ?? null,
    side_effects: p.sideEffects as Record<string, number>,
    first_side_effect_failure: (p.firstSideEffectFailure as FullScanProgress['first_side_effect_failure']) ?? null,
    in_flight: Number(p.inFlight),
    scan_window: num(p.scanWindow),
    enumeration_paused: Boolean(p.enumerationPaused),
  };
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** Starts a full scan of a scope (by name or id) through the startFullScan mutation. */
export async function apiScanStart(target: ApiTarget, scopeRef: string): Promise<StartResult & { scopeName: string }> {
  // Every id of the API is a BigInt, a string in JSON: the one rowId returns.
  let scopeId: string;
  let scopeName = scopeRef;
  if (/^\d+$/.test(scopeRef)) {
    scopeId = BigInt(scopeRef).toString(); // "007" is scope 7, as on the database path
  } else {
    const data = NAME.test(scopeRef)
      ? await apiRequest<{ scopeByName: { rowId: string; name: string } | null }>(target, operation('scope-by-name'), { name: scopeRef })
      : { scopeByName: null };
    if (!data.scopeByName) throw new UsageError(`unknown scope ${JSON.stringify(scopeRef)} (see: dsx-connect scope list)`);
    scopeId = data.scopeByName.rowId;
    scopeName = data.scopeByName.name;
  }
  const data = await apiRequest<{ startFullScan: { alreadyActive: boolean; fullScan: { rowId: string; status: string; scope: { name: string } | null } } }>(
    target,
    operation('start-full-scan'),
    { scopeId },
  );
  const r = data.startFullScan;
  return { fullScanId: Number(r.fullScan.rowId), fullScanRowId: r.fullScan.rowId, alreadyActive: r.alreadyActive, status: r.fullScan.status, scopeName: r.fullScan.scope?.name ?? scopeName };
}

/** Cancels a full scan through the cancelFullScan mutation; returns its status afterwards. */
export async function apiScanCancel(target: ApiTarget, id: number, mode: 'drain' | 'interrupt'): Promise<string> {
  const data = await apiRequest<{ cancelFullScan: { fullScan: { status: string } } }>(target, operation('cancel-full-scan'), {
    fullScanId: String(id),
    mode: mode.toUpperCase(),
  });
  return data.cancelFullScan.fullScan.status;
}

/**
 * Follows a full scan through the fullScanProgress subscription until it has finished, showing each
 * event on `view` (if any), and returns its final progress row. A stop signal (Ctrl-C) stops following
 * (the scan goes on) and resolves with `interrupted` set to that signal.
 */
export async function apiFollowFullScan(
  target: ApiTarget,
  id: number,
  view?: ProgressView,
): Promise<{ final: FullScanProgress; interrupted: StopSignal | null }> {
  let last: ProgressEvent | undefined;
  const sub = apiSubscribe<{ fullScanProgress: ProgressEvent | null }>(target, operation('full-scan-progress'), { fullScanId: String(id) }, (d) => {
    const e = d.fullScanProgress;
    if (!e) return;
    last = { ...e, fullScanId: Number(e.fullScanId), discovered: Number(e.discovered), finalized: Number(e.finalized), skipped: Number(e.skipped) };
    view?.update(last);
  });
  let interrupted: StopSignal | null = null;
  const stopFollowing = onStopSignal((sig) => {
    interrupted = sig;
    sub.stop();
  });
  try {
    await sub.done;
  } catch (err) {
    // The server checks the id in the first event: say it the way `scan status` does.
    if (err instanceof ApiError && /^unknown full scan id/.test(err.message)) throw new UsageError(err.message);
    throw err;
  } finally {
    stopFollowing();
    view?.stop();
  }
  if (!interrupted && !last?.finishedAt) {
    throw new ApiError(`the progress stream of full scan ${id} ended before the scan finished (the server stopped or lost its database)`, {
      hint: `follow it again: dsx-connect scan status ${id} --follow`,
    });
  }
  const final = await apiFullScanProgress(target, id);
  if (!final) throw new UsageError(`unknown full scan id ${id}`);
  return { final, interrupted };
}
