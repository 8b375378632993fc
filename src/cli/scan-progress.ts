/**
 * How `scan start --follow` / `scan status --follow` show a running full scan: a live bar on a terminal
 * (cli-progress, redrawn in place), and plain lines elsewhere (at most one a second, plus every status
 * change), so that logs and CI output stay readable. While enumeration goes on the total is unknown:
 * no percentage and no ETA are shown then, only how many objects were discovered so far.
 */
import cliProgress from 'cli-progress';

/** One event of the fullScanProgress subscription (graphql/operations/full-scan-progress.graphql). */
export interface ProgressEvent {
  event: string;
  fullScanId: number;
  status: string;
  discovered: number;
  finalized: number;
  enumerationExhausted: boolean;
  percentFinalized: number | null;
  objectsPerS: number | null;
  etaS: number | null;
  outcomes: Record<string, number>;
  cancelMode: string | null;
  error: string | null;
  finishedAt: string | null;
  /** Entries enumeration met and did not scan (symlinks, special files, unreadable directories, ...). */
  skipped: number;
  /** Directories that could not be read, named (null when there are none). */
  enumerationWarning: string | null;
}

export interface ProgressView {
  update(e: ProgressEvent): void;
  /** Ends the display (leaves the last bar on screen). */
  stop(): void;
}

/** Outcome counts above zero, as `clean=196 malicious=3`. */
export function outcomeCounts(outcomes: Record<string, number>): string {
  return Object.entries(outcomes)
    .filter(([, n]) => Number(n) > 0)
    .map(([k, n]) => `${k}=${n}`)
    .join(' ');
}

/** Seconds as `45s`, `5m03s`, `2h07m`. */
export function formatEta(seconds: number): string {
  // Rounded first: 119.6 s is 2m00s, not 1m60s.
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** True while the scan runs and its total is not known yet. */
function enumerating(e: ProgressEvent): boolean {
  return e.status === 'running' && !e.enumerationExhausted;
}

/**
 * `450/1000 (45.0%)` once the total is known; `450/1200 finalized, enumerating: 1200 discovered so far`
 * before; `450/1200 finalized (enumeration stopped)` for a scan canceled or failed before the end.
 */
function countsText(e: ProgressEvent): string {
  const counts = `${e.finalized}/${e.discovered}`;
  if (enumerating(e)) return `${counts} finalized, enumerating: ${e.discovered} discovered so far`;
  if (e.percentFinalized !== null) return `${counts} (${Number(e.percentFinalized).toFixed(1)}%)`;
  return e.enumerationExhausted || e.status === 'queued' ? counts : `${counts} finalized (enumeration stopped)`;
}

function fields(e: ProgressEvent) {
  return {
    status: e.status,
    counts: countsText(e),
    rate: e.objectsPerS === null ? '-' : String(e.objectsPerS),
    etaText: e.etaS === null ? '' : `, ETA ${formatEta(e.etaS)}`,
    skippedText: Number(e.skipped) > 0 ? `, ${e.skipped} skipped` : '',
    outcomes: outcomeCounts(e.outcomes),
  };
}

/**
 * One line per event: `full scan 7 running: 450/1000 (45.0%), 120 objects/s, ETA 5s, clean=440 malicious=3`
 * (while enumerating: `full scan 7 running: 450/1200 finalized, enumerating: 1200 discovered so far, 120 objects/s, ...`).
 */
export function progressLine(e: ProgressEvent): string {
  const f = fields(e);
  return `full scan ${e.fullScanId} ${f.status}: ${f.counts}, ${f.rate} objects/s${f.etaText}${f.skippedText}${f.outcomes ? `, ${f.outcomes}` : ''}`;
}

/** A bar on a TTY, lines otherwise. `now` is injectable for tests of the line throttle. */
export function progressView(stream: NodeJS.WriteStream, opts: { now?: () => number; intervalMs?: number } = {}): ProgressView {
  if (stream.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        stream,
        format: 'full scan {id} {status} [{bar}] {counts} | {rate} objects/s{etaText}{skippedText} | {outcomes}',
        barsize: 28,
        hideCursor: true,
        clearOnComplete: false,
        stopOnComplete: false,
        fps: 10,
      },
      cliProgress.Presets.shades_classic,
    );
    let started = false;
    return {
      update(e) {
        // The bar fills only against a known total: while enumerating it stays empty (the text counts).
        const total = Math.max(Number(e.discovered), 1);
        const value = enumerating(e) ? 0 : Number(e.finalized);
        const payload = { id: e.fullScanId, ...fields(e) };
        if (!started) {
          bar.start(total, value, payload);
          started = true;
        } else {
          bar.setTotal(total);
          bar.update(value, payload);
        }
      },
      stop() {
        if (started) bar.stop();
      },
    };
  }
  const now = opts.now ?? Date.now;
  const interval = opts.intervalMs ?? 1000;
  let lastAt = -Infinity;
  let lastStatus = '';
  let lastWarning: string | null = null;
  return {
    update(e) {
      // A new enumeration warning (a directory that could not be read) is shown at once, unthrottled.
      if (e.enumerationWarning && e.enumerationWarning !== lastWarning) {
        lastWarning = e.enumerationWarning;
        stream.write(`full scan ${e.fullScanId} warning: ${e.enumerationWarning}\n`);
      }
      const t = now();
      if (e.status === lastStatus && !e.finishedAt && t - lastAt < interval) return;
      lastAt = t;
      lastStatus = e.status;
      stream.write(`${progressLine(e)}\n`);
    },
    stop() {},
  };
}
