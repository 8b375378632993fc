/** `dsx-connect scan start|status|cancel`: full scans, backed by dsx.start_full_scan / dsx.cancel_full_scan. */
import os from 'node:os';
import type { Command } from 'commander';
import { scopeGet, scopeGetByName } from '../db/sql/catalog.ts';
import { resultsList } from '../db/sql/results.ts';
import { fullScanCancel, fullScanFinished, fullScanProgressGet, fullScanSkippedList, fullScanStart, fullScanVerify, SKIP_REASONS, type FullScanProgress, type SkipReason } from '../db/sql/full-scans.ts';
import { SIDE_EFFECT_STATUSES } from '../db/sql/side-effect-listing.ts';
import { loadConfig } from '../config.ts';
import { action, output, positiveInt, UsageError, withDatabase } from './common.ts';
import { intInRange, LIMITS, outcomeOption } from './options.ts';
import { signalExitCode, type StopSignal } from './signals.ts';
import { apiFollowFullScan, apiFullScanProgress, apiScanCancel, apiScanStart, apiTarget, withApiOptions, type ApiOptions } from './scan-api.ts';
import { formatEta, outcomeCounts, progressView } from './scan-progress.ts';
import type { ApiTarget } from './api-client.ts';
import { OUTCOMES } from '../pipeline/outcomes.ts';

const FINISHED = new Set(['completed', 'canceled', 'failed']);

function skipReasonOption(value: string): SkipReason {
  if (!(SKIP_REASONS as readonly string[]).includes(value)) {
    throw new UsageError(`--reason must be one of ${SKIP_REASONS.join(', ')} (got ${JSON.stringify(value)})`);
  }
  return value as SkipReason;
}

/**
 * Exit codes of `scan status` and `--follow` once a scan has finished: 0 completed, 3 failed,
 * 4 canceled (1 and 2 already mean "the command failed" and "bad command line"). A scan still queued
 * or running exits 0.
 */
export const SCAN_EXIT_CODES: Record<string, number> = { completed: 0, failed: 3, canceled: 4 };

function printStatus(p: FullScanProgress, json: boolean): void {
  output(json, statusJson(p), () => describe(p));
  if (p.finished_at) process.exitCode = SCAN_EXIT_CODES[p.status] ?? 0;
}

function stoppedFollowing(id: number, sig: StopSignal): void {
  process.stderr.write(`\nstopped following; full scan ${id} goes on (follow again: dsx-connect scan status ${id} --follow)\n`);
  process.exitCode = signalExitCode(sig);
}

/** --follow: live progress (stdout, or stderr under --json), then the final status like `scan status`. */
async function follow(api: ApiTarget, id: number, json: boolean): Promise<void> {
  const view = progressView(json ? process.stderr : process.stdout);
  const r = await apiFollowFullScan(api, id, view);
  if (r.interrupted) return stoppedFollowing(id, r.interrupted);
  printStatus(r.final, json);
}

/** `user@host` of the operator, recorded as requested_by. */
export function requester(): string {
  return `${os.userInfo().username}@${os.hostname()}`;
}

/** The second line of `scan status`: counts, and a percentage and ETA only once the total is known. */
function progressText(p: FullScanProgress): string {
  const counts = `finalized ${p.finalized}/${p.discovered}`;
  const rate = p.objects_per_s ? `, ${p.objects_per_s} objects/s` : '';
  if (p.status === 'running' && !p.enumeration_exhausted) return `${counts}, enumerating: ${p.discovered} discovered so far${rate}`;
  if (p.status === 'queued' || p.enumeration_exhausted) {
    const percent = p.status === 'running' && p.percent_finalized !== null ? ` (${Number(p.percent_finalized).toFixed(1)}%)` : '';
    return `${counts}${percent}${rate}${p.status === 'running' && p.eta_s !== null ? `, ETA ${formatEta(p.eta_s)}` : ''}`;
  }
  // Canceled or failed before the scope was fully listed: what was discovered is not the scope.
  return `${counts}${rate} (enumeration stopped before the whole scope was listed)`;
}

/** Counts above zero in a fixed order, as `done=3 failed=1`. */
function counts(values: Record<string, number>, order: readonly string[]): string {
  return order.filter((k) => Number(values[k] ?? 0) > 0).map((k) => `${k}=${values[k]}`).join(' ');
}

function skippedLines(p: FullScanProgress): string[] {
  if (!p.skipped) return [];
  return [
    `  skipped ${p.skipped} (not scanned): ${counts(p.skipped_reasons, SKIP_REASONS)} (list them: dsx-connect scan skipped ${p.id})`,
    ...(p.enumeration_warning ? [`  warning: ${p.enumeration_warning}`] : []),
  ];
}

/** Shown when a side effect failed or is still to run; every count is in --json either way. */
function sideEffectLines(p: FullScanProgress): string[] {
  const e = p.side_effects;
  if (!(e.failed || e.pending || e.executing)) return [];
  const f = p.first_side_effect_failure;
  return [
    `  side effects: ${counts(e, SIDE_EFFECT_STATUSES)} (list them: dsx-connect effects --scan ${p.id})`,
    ...(f
      ? [`  first failure: ${f.kind} ${f.action}${f.channel ? ` to channel ${f.channel}` : ''} for ${JSON.stringify(f.object_identity)}: ${f.detail ?? '(no detail)'}`]
      : []),
  ];
}

function describe(p: FullScanProgress): string {
  const outcomes = outcomeCounts(p.outcomes);
  return [
    `full scan ${p.id} of scope ${p.scope_name}: ${p.status}${p.cancel_mode ? ` (${p.cancel_mode})` : ''}`,
    `  ${progressText(p)}`,
    `  outcomes: ${outcomes || '(none yet)'}`,
    ...skippedLines(p),
    ...(p.error ? [`  error: ${p.error}`] : []),
    ...(p.scanner_state && p.scanner_state !== 'ok' && !p.finished_at
      ? [`  scanner ${p.scanner_state} since ${new Date(p.scanner_since!).toISOString()}: scans wait until it answers (${p.scanner_error ?? 'no answer'})`]
      : []),
    ...(p.enumeration_error && !p.finished_at
      ? [
          `  listing failing (attempt ${p.enumeration_attempt} of ${p.enumeration_max_attempts}): ${p.enumeration_error}`,
          `  next try at ${new Date(p.enumeration_retry_at!).toISOString()}`,
        ]
      : []),
    ...(p.status === 'running' && p.scan_window !== null && !p.enumeration_exhausted
      ? [`  in flight: ${p.in_flight} of a window of ${p.scan_window}${p.enumeration_paused ? ' (listing waits for room: it resumes as objects are finalized)' : ''}`]
      : []),
    ...sideEffectLines(p),
  ].join('\n');
}

/** The JSON shape `scan status --json` prints (a stable contract for scripts). */
export function statusJson(p: FullScanProgress) {
  return {
    id: p.id,
    scope: p.scope_name,
    scope_id: p.scope_id,
    status: p.status,
    finished: FINISHED.has(p.status) && p.finished_at !== null,
    discovered: p.discovered,
    finalized: p.finalized,
    pages: p.pages,
    enumeration_exhausted: p.enumeration_exhausted,
    // Null until enumeration is exhausted: the total is not known before.
    percent_finalized: p.percent_finalized,
    outcomes: p.outcomes,
    objects_per_s: p.objects_per_s,
    eta_s: p.eta_s,
    skipped: p.skipped,
    skipped_reasons: p.skipped_reasons,
    enumeration_warning: p.enumeration_warning,
    side_effects: p.side_effects,
    first_side_effect_failure: p.first_side_effect_failure,
    in_flight: p.in_flight,
    scan_window: p.scan_window,
    enumeration_paused: p.enumeration_paused,
    cancel_mode: p.cancel_mode,
    error: p.error,
    enumeration_error: p.enumeration_error,
    enumeration_attempt: p.enumeration_attempt,
    enumeration_max_attempts: p.enumeration_max_attempts,
    enumeration_retry_at: p.enumeration_retry_at,
    scanner_state: p.scanner_state,
    scanner_since: p.scanner_since,
    scanner_error: p.scanner_error,
    requested_by: p.requested_by,
    created_at: p.created_at,
    started_at: p.started_at,
    finished_at: p.finished_at,
  };
}

export function registerScanCommands(program: Command): void {
  const scan = program.command('scan').description('start, follow and cancel full scans');
  withApiOptions(
    scan
      .command('start')
      .description('start a full scan of a scope; prints its id (the active scan\'s id if one is running)')
      .argument('<scope>', 'scope name (or id)')
      .option('--follow', 'then show live progress until the scan ends (over the API); the exit code tells how it ended')
      .option('--json', 'print JSON'),
  ).action(
    action(async (scopeRef: string, o: ApiOptions & { json?: boolean; follow?: boolean }) => {
      const config = loadConfig();
      const api = await apiTarget(o, config);
      const r = api
        ? await apiScanStart(api, scopeRef)
        : await withDatabase(async (db) => {
            const scope = /^\d+$/.test(scopeRef) ? await scopeGet(db.pool, Number(scopeRef)) : await scopeGetByName(db.pool, scopeRef);
            if (!scope) throw new UsageError(`unknown scope ${JSON.stringify(scopeRef)} (see: dsx-connect scope list)`);
            return { ...(await fullScanStart(db.pool, scope.id, requester())), scopeName: scope.name };
          });
      if (r.alreadyActive && !o.json) process.stderr.write(`scope ${r.scopeName} already has an active full scan (${r.status})\n`);
      const { scopeName: _, ...started } = r;
      if (!o.follow) return output(!!o.json, started, () => String(r.fullScanId));
      if (!o.json) process.stdout.write(`full scan ${r.fullScanId} of scope ${r.scopeName}\n`);
      await follow(api!, r.fullScanId, !!o.json);
    }),
  );
  withApiOptions(
    scan
      .command('status')
      .description('show a full scan\'s progress')
      .argument('<id>', 'full scan id')
      .option('--json', 'print one JSON object')
      .option('--wait', 'wait until the scan has finished, then print')
      .option('--follow', 'show live progress until the scan ends, then print (over the API)'),
  ).action(
    action(async (idArg: string, o: ApiOptions & { json?: boolean; wait?: boolean; follow?: boolean }) => {
      const id = positiveInt('full scan id', idArg);
      const config = loadConfig();
      const api = await apiTarget(o, config);
      if (api) {
        if (o.follow) return follow(api, id, !!o.json);
        let p = await apiFullScanProgress(api, id);
        if (!p) throw new UsageError(`unknown full scan id ${id}`);
        if (o.wait && !p.finished_at) {
          const r = await apiFollowFullScan(api, id);
          if (r.interrupted) return stoppedFollowing(id, r.interrupted);
          p = r.final;
        }
        return printStatus(p, !!o.json);
      }
      await withDatabase(async (db) => {
        // --wait polls whether the scan finished, not the whole row (which also counts its side effects).
        for (;;) {
          const finished = await fullScanFinished(db.pool, id);
          if (finished === null) throw new UsageError(`unknown full scan id ${id}`);
          if (!o.wait || finished) break;
          await new Promise((r) => setTimeout(r, 250));
        }
        const p = await fullScanProgressGet(db.pool, id);
        if (!p) throw new UsageError(`unknown full scan id ${id}`);
        printStatus(p, !!o.json);
      });
    }),
  );
  withApiOptions(
    scan
      .command('cancel')
      .description('cancel a full scan')
      .argument('<id>', 'full scan id')
      .option('--mode <mode>', 'drain: queued scans finish normally; interrupt: the rest end as canceled', 'drain'),
  ).action(
    action(async (idArg: string, o: ApiOptions & { mode: string }) => {
      const id = positiveInt('full scan id', idArg);
      if (o.mode !== 'drain' && o.mode !== 'interrupt') throw new UsageError(`--mode must be drain or interrupt (got ${JSON.stringify(o.mode)})`);
      const mode = o.mode;
      const config = loadConfig();
      const api = await apiTarget(o, config);
      const { before, status } = api
        ? { before: await apiFullScanProgress(api, id), status: undefined }
        : await withDatabase(async (db) => {
            const before = await fullScanProgressGet(db.pool, id);
            return { before, status: before ? await fullScanCancel(db.pool, id, mode, requester()) : undefined };
          });
      if (!before) throw new UsageError(`unknown full scan id ${id}`);
      const after = status ?? (await apiScanCancel(api!, id, mode));
      if (before.status !== 'queued' && before.status !== 'running') {
        process.stderr.write(`full scan ${id} had already ended (${before.status}); nothing to cancel\n`);
      }
      process.stdout.write(`${after}\n`);
    }),
  );
  scan
    .command('skipped')
    .description('entries a full scan met and did not scan (symlinks, special files, unreadable directories, ...), in the order met')
    .argument('<id>', 'full scan id')
    .option('--reason <reason>', `only this reason: ${SKIP_REASONS.join(', ')}`)
    .option('--limit <n>', `at most this many (${LIMITS.resultsLimit.min}-${LIMITS.resultsLimit.max})`, '1000')
    .option('--json', 'print JSON')
    .action(
      action(async (idArg: string, o: { reason?: string; limit: string; json?: boolean }) => {
        const id = positiveInt('full scan id', idArg);
        const reason = o.reason === undefined ? undefined : skipReasonOption(o.reason);
        const limit = intInRange('--limit', o.limit, LIMITS.resultsLimit);
        await withDatabase(async (db) => {
          if ((await fullScanFinished(db.pool, id)) === null) throw new UsageError(`unknown full scan id ${id}`);
          const rows = await fullScanSkippedList(db.pool, { id, reason, limit });
          output(!!o.json, rows, () =>
            rows.length ? rows.map((r) => `${r.reason}\t${JSON.stringify(r.identity)}${r.detail ? `\t${r.detail}` : ''}`).join('\n') : '(no skipped entries)',
          );
        });
      }),
    );
  scan
    .command('verify')
    .description('check a full scan\'s invariants (counters, one result per object, side effects, queue); exits 1 if any fails')
    .argument('<id>', 'full scan id')
    .option('--json', 'print JSON')
    .action(
      action(async (idArg: string, o: { json?: boolean }) => {
        const id = positiveInt('full scan id', idArg);
        await withDatabase(async (db) => {
          const checks = await fullScanVerify(db.pool, id);
          output(!!o.json, checks, () => checks.map((c) => `${c.ok ? 'ok  ' : 'FAIL'}  ${c.check_name}: ${c.detail}`).join('\n'));
          if (checks.some((c) => !c.ok)) process.exitCode = 1;
        });
      }),
    );

  program
    .command('results')
    .description('finalized results of a scope, newest first')
    .requiredOption('--scope <name>', 'scope name')
    .option('--since <iso-time>', 'only results finalized at or after this time')
    .option('--outcome <outcome>', `only this outcome: ${OUTCOMES.join(', ')}`)
    .option('--limit <n>', `at most this many (${LIMITS.resultsLimit.min}-${LIMITS.resultsLimit.max})`, '1000')
    .option('--json', 'print JSON')
    .action(
      action(async (o: { scope: string; since?: string; outcome?: string; limit: string; json?: boolean }) => {
        const since = o.since ? new Date(o.since) : undefined;
        if (since && Number.isNaN(since.getTime())) throw new UsageError(`--since must be an ISO-8601 time (got ${JSON.stringify(o.since)})`);
        const limit = intInRange('--limit', o.limit, LIMITS.resultsLimit);
        const outcome = o.outcome === undefined ? undefined : outcomeOption(o.outcome);
        await withDatabase(async (db) => {
          const scope = await scopeGetByName(db.pool, o.scope);
          if (!scope) throw new UsageError(`unknown scope ${JSON.stringify(o.scope)} (see: dsx-connect scope list)`);
          const rows = await resultsList(db.pool, { scopeId: scope.id, since, outcome, limit });
          output(!!o.json, rows, () =>
            rows.map((r) => `${r.finalized_at}\t${r.outcome}${r.reason ? `/${r.reason}` : ''}\t${r.source_type}\t${r.identity}`).join('\n'),
          );
        });
      }),
    );
}
