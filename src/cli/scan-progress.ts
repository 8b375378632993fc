/**
 * How `scan start --follow` / `scan status --follow` show a running full scan: a live bar on a terminal
 * (cli-progress, redrawn in place), and plain lines elsewhere (at most one a second, plus every status
 * change), so that logs and CI output stay readable.
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

function eta(s: number | null): string {
  if (s === null) return '-';
  if (s < 60) return `${Math.round(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(Math.round(s % 60)).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

function fields(e: ProgressEvent) {
  return {
    status: e.status,
    more: e.enumerationExhausted ? '' : '+',
    pct: e.percentFinalized === null ? '0.0' : Number(e.percentFinalized).toFixed(1),
    rate: e.objectsPerS === null ? '-' : String(e.objectsPerS),
    etaText: eta(e.etaS),
    outcomes: outcomeCounts(e.outcomes),
  };
}

/** One line per event: `full scan 7 running: 450/1000+ (45.0%), 120 objects/s, ETA 5s, clean=440 malicious=3`. */
export function progressLine(e: ProgressEvent): string {
  const f = fields(e);
  return (
    `full scan ${e.fullScanId} ${f.status}: ${e.finalized}/${e.discovered}${f.more} (${f.pct}%), ` +
    `${f.rate} objects/s, ETA ${f.etaText}${f.outcomes ? `, ${f.outcomes}` : ''}`
  );
}

/** A bar on a TTY, lines otherwise. `now` is injectable for tests of the line throttle. */
export function progressView(stream: NodeJS.WriteStream, opts: { now?: () => number; intervalMs?: number } = {}): ProgressView {
  if (stream.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        stream,
        format: 'full scan {id} {status} [{bar}] {pct}% | {value}/{total}{more} | {rate} objects/s | ETA {etaText} | {outcomes}',
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
        const total = Math.max(Number(e.discovered), 1);
        const payload = { id: e.fullScanId, ...fields(e) };
        if (!started) {
          bar.start(total, Number(e.finalized), payload);
          started = true;
        } else {
          bar.setTotal(total);
          bar.update(Number(e.finalized), payload);
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
  return {
    update(e) {
      const t = now();
      if (e.status === lastStatus && !e.finishedAt && t - lastAt < interval) return;
      lastAt = t;
      lastStatus = e.status;
      stream.write(`${progressLine(e)}\n`);
    },
    stop() {},
  };
}
