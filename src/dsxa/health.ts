/**
 * Is the scanner there? A scanner outage must not become a verdict: when DSXA cannot be reached, refuses
 * our token, or fails request after request for different objects, no object is finalized as
 * unable_to_scan or timeout because of it. Scan jobs ask this before they fetch anything and, while the
 * scanner is unavailable, put themselves back in the queue for when it is expected to answer again
 * (without burning their attempts). One probe loop per process asks DSXA (a scan of a few bytes, the
 * truest health check the API allows) with backoff, and the state is recorded in the database
 * (dsx.scanner_status) so that `scan status`, the progress subscription and /readyz can say "scanner
 * unavailable since ...".
 *
 * When is it the scanner and not the object?
 * - at once, for failures no object can cause: connection refused or reset before an answer, an unknown
 *   host, 401/403 (the token);
 * - after STORM_FAILURES failed scans in a row (5xx, timeouts, dropped connections) over at least two
 *   different objects, with no success in between: one object that makes DSXA time out or fail keeps its
 *   own outcome after its retries, as before.
 */
import type { DsxaError } from './client.ts';

/** Failed scans in a row (over two or more objects) that mean the scanner, not the objects. */
export const STORM_FAILURES = 5;
/** First and longest pause between probes of an unavailable scanner. */
const PROBE_MIN_MS = 2_000;
const PROBE_MAX_MS = 30_000;

/** Errors of the network that no object causes: the scanner is not there. */
const UNREACHABLE = /\b(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|EHOSTDOWN)\b/;

export type ScannerState = 'ok' | 'unavailable' | 'unauthorized';

/** What a state change, or a new reason in the same state, is reported with. */
export interface ScannerStatus {
  state: ScannerState;
  /** When the current state began. */
  since: Date;
  /** Why it is not ok (the last error, without the token). */
  error: string | null;
}

export interface ScannerHealthOptions {
  /** Asks the scanner once; resolves when it answered with a verdict, throws a DsxaError otherwise. */
  probe(): Promise<void>;
  /** Called on every change of state, and of the reason while not ok (records it in the database). */
  report?(status: ScannerStatus): Promise<void> | void;
  onChange?(status: ScannerStatus): void;
  now?: () => number;
}

/** The scanner's health as this process sees it (see the module comment). */
export class ScannerHealth {
  readonly #opts: ScannerHealthOptions;
  #state: ScannerState = 'ok';
  #since = new Date();
  #error: string | null = null;
  #failures = 0;
  readonly #failedObjects = new Set<string>();
  #probeDelay = PROBE_MIN_MS;
  #nextProbeAt = 0;
  #timer: NodeJS.Timeout | undefined;
  #probing: Promise<void> | null = null;
  #stopped = false;
  readonly #waiters = new Set<() => void>();

  constructor(opts: ScannerHealthOptions) {
    this.#opts = opts;
  }

  get status(): ScannerStatus {
    return { state: this.#state, since: this.#since, error: this.#error };
  }

  /** True while scans should not be attempted. */
  get unavailable(): boolean {
    return this.#state !== 'ok';
  }

  /** When the next probe runs (ms since the epoch): deferred scan jobs are scheduled just after it. */
  get nextProbeAt(): number {
    return this.#nextProbeAt;
  }

  /** A scan got a verdict: the scanner answers. */
  recordSuccess(): void {
    this.#failures = 0;
    this.#failedObjects.clear();
    if (this.#state !== 'ok') this.#set('ok', null);
  }

  /**
   * A scan failed with `err` (a DsxaError) for `objectKey`. Returns true when the scanner is now
   * unavailable: the caller defers the job instead of counting the failure against the object.
   */
  recordFailure(err: DsxaError, objectKey: string): boolean {
    if (this.#state !== 'ok') return true;
    if (err.kind === 'auth') {
      this.#set('unauthorized', err.message);
      return true;
    }
    if (err.kind !== 'unavailable' && err.kind !== 'timeout') return false;
    if (err.kind === 'unavailable' && err.httpStatus === undefined && UNREACHABLE.test(err.message)) {
      this.#set('unavailable', err.message);
      return true;
    }
    this.#failures++;
    this.#failedObjects.add(objectKey);
    if (this.#failures >= STORM_FAILURES && this.#failedObjects.size >= 2) {
      this.#set('unavailable', `${this.#failures} scans in a row failed, the last: ${err.message}`);
      return true;
    }
    return false;
  }

  /** Resolves when the scanner is available again (or at once if it is), or when `signal` aborts. */
  whenAvailable(signal?: AbortSignal): Promise<void> {
    if (this.#state === 'ok') return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        this.#waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      this.#waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  /** Probes once now (worker start): records and returns the state. */
  async check(): Promise<ScannerStatus> {
    try {
      await this.#opts.probe();
      this.recordSuccess();
    } catch (err) {
      const e = err as DsxaError;
      if (e.kind === 'auth') this.#set('unauthorized', e.message);
      else this.#set('unavailable', e.message ?? String(err));
    }
    return this.status;
  }

  /** Stops the probe loop. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#probing;
    for (const w of [...this.#waiters]) w();
  }

  #now(): number {
    return this.#opts.now?.() ?? Date.now();
  }

  #set(state: ScannerState, error: string | null): void {
    const changed = state !== this.#state;
    // A new reason in the same state is reported too (not logged again): during an outage the status
    // should say why now ("connection refused"), not why it began (the requests the crash cut off).
    const reasonChanged = !changed && state !== 'ok' && error !== this.#error;
    this.#state = state;
    this.#error = error;
    if (changed) this.#since = new Date(this.#now());
    const status = this.status;
    if (changed) this.#opts.onChange?.(status);
    if (changed || reasonChanged) void Promise.resolve(this.#opts.report?.(status)).catch(() => {});
    if (state === 'ok') {
      clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#probeDelay = PROBE_MIN_MS;
      this.#nextProbeAt = 0;
      for (const w of [...this.#waiters]) w();
    } else if (!this.#timer && !this.#probing) {
      this.#schedule();
    }
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#nextProbeAt = this.#now() + this.#probeDelay;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#probing = this.#probeOnce().finally(() => {
        this.#probing = null;
      });
    }, this.#probeDelay);
    this.#timer.unref();
  }

  async #probeOnce(): Promise<void> {
    try {
      await this.#opts.probe();
      this.recordSuccess();
    } catch (err) {
      const e = err as DsxaError;
      const message = e.message ?? String(err);
      if (e.kind === 'auth' && this.#state !== 'unauthorized') this.#set('unauthorized', message);
      else if (this.#state !== 'ok' && message !== this.#error) this.#set(this.#state, message);
      this.#probeDelay = Math.min(PROBE_MAX_MS, this.#probeDelay * 2);
      this.#schedule();
    }
  }
}
