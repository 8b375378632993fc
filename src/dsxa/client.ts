/**
 * DSXA client: `POST /scan/binary/v2` with the object streamed as the body and the headers of Deep
 * Instinct's SDKs, over kept-alive connections, with a timeout, a limit of scans in flight, and errors
 * classified as retryable or final. Only the URL and token differ between the emulator and a real DSXA.
 */
import http from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { dsxaResponseSchema, type DsxaResponse } from './types.ts';

/** Why a scan produced no verdict. */
export type DsxaErrorKind = 'timeout' | 'unavailable' | 'auth' | 'bad_request' | 'protocol';

/** Kinds worth retrying later: the scanner was slow or unreachable, not wrong about this request. */
const RETRYABLE: ReadonlySet<DsxaErrorKind> = new Set(['timeout', 'unavailable']);

/**
 * A scan that produced no verdict. `retryable`: the same request later may succeed. The message names
 * the URL (never the token) and what happened.
 */
export class DsxaError extends Error {
  readonly kind: DsxaErrorKind;
  readonly retryable: boolean;
  readonly httpStatus: number | undefined;
  constructor(kind: DsxaErrorKind, message: string, opts: { httpStatus?: number; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'DsxaError';
    this.kind = kind;
    this.retryable = RETRYABLE.has(kind);
    this.httpStatus = opts.httpStatus;
  }
}

/** How to reach DSXA and how hard to push it. */
export interface DsxaClientOptions {
  /** Base URL, e.g. `http://dsxa:5000` (a trailing slash is fine). */
  url: string;
  /** Sent as both `AUTH_TOKEN` and `AUTH`, as the SDKs do; null/absent = no auth headers. */
  token?: string | null;
  /** Timeout of one request, from the moment it starts (not while waiting for a slot). Default 30 s. */
  timeoutMs?: number;
  /** Requests in flight at once through this client; more callers wait their turn. Default 16. */
  maxInFlight?: number;
  /** `protected_entity` header. Default 1. */
  protectedEntity?: number;
}

/** Options of one scan. */
export interface ScanOptions {
  /** Body length when known: sent as Content-Length (a stream yielding a different length fails). */
  size?: number | null;
  /** `X-Custom-Metadata` header: free text DSXA echoes back (attribution). Non-ASCII is %-encoded. */
  metadata?: string;
  /** Gives up the scan (while waiting for a slot too); the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * Waits for a slot ahead of every waiting scan that is not urgent (monitoring's scans, so that a new
   * object never waits behind a full scan's backlog of scans); in flight, it counts like any other.
   */
  urgent?: boolean;
  /**
   * Takes no slot: the health probe's one small request, which must not wait behind a backlog of scans
   * (each of which may be waiting out its timeout against a scanner that does not answer).
   */
  outsideSlots?: boolean;
}

/** A verdict from DSXA. `httpStatus` is 200, or a 4xx whose body still carried a verdict. */
export interface ScanResult {
  httpStatus: number;
  response: DsxaResponse;
  durationMs: number;
}

/** Larger responses are not DSXA's (its answers are a few hundred bytes); the rest is dropped. */
const MAX_RESPONSE_BYTES = 1 << 20;

/** 4xx statuses that mean "later", not "never". */
const RETRYABLE_4XX: ReadonlySet<number> = new Set([408, 429]);

/** The URL without credentials, for messages. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return url;
  }
}

/** A counting semaphore whose slots pass straight from a releaser to the oldest waiter, urgent ones first. */
class Slots {
  readonly #max: number;
  #used = 0;
  readonly #waiters: { grant: () => void; urgent: boolean }[] = [];

  constructor(max: number) {
    this.#max = max;
  }

  get used(): number {
    return this.#used;
  }

  get waiting(): number {
    return this.#waiters.length;
  }

  acquire(signal?: AbortSignal, urgent = false): Promise<void> {
    signal?.throwIfAborted();
    if (this.#used < this.#max) {
      this.#used++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const waiter = {
        urgent,
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        const i = this.#waiters.indexOf(waiter);
        if (i !== -1) this.#waiters.splice(i, 1);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      // Urgent waiters queue behind earlier urgent ones only (first in, first out among themselves).
      const at = urgent ? this.#waiters.findIndex((w) => !w.urgent) : -1;
      if (at === -1) this.#waiters.push(waiter);
      else this.#waiters.splice(at, 0, waiter);
    });
  }

  release(): void {
    const next = this.#waiters.shift();
    if (next) next.grant();
    else this.#used--;
  }
}

/**
 * A DSXA scanner endpoint. One instance per process is the intent: its `maxInFlight` is then the
 * process's limit of scans in flight, and its kept-alive connections are shared by every scan.
 */
export class DsxaClient {
  readonly #base: string;
  readonly #scanUrl: string;
  readonly #shownUrl: string;
  readonly #token: string | null;
  readonly #timeoutMs: number;
  readonly #protectedEntity: number;
  readonly #slots: Slots;
  readonly #agent: http.Agent;
  readonly #http: typeof http | typeof https;

  constructor(opts: DsxaClientOptions) {
    this.#base = opts.url.replace(/\/+$/, '');
    this.#scanUrl = `${this.#base}/scan/binary/v2`;
    this.#shownUrl = redact(this.#scanUrl);
    this.#token = opts.token || null;
    this.#timeoutMs = opts.timeoutMs ?? 30_000;
    this.#protectedEntity = opts.protectedEntity ?? 1;
    const maxInFlight = Math.max(1, opts.maxInFlight ?? 16);
    this.#slots = new Slots(maxInFlight);
    this.#http = this.#base.startsWith('https:') ? https : http;
    this.#agent = new this.#http.Agent({ keepAlive: true, maxSockets: maxInFlight, scheduling: 'lifo' });
  }

  /** The base URL this client talks to. */
  get url(): string {
    return this.#base;
  }

  /** Requests in flight now. */
  get inFlight(): number {
    return this.#slots.used;
  }

  /** Callers waiting for a free slot now. */
  get waiting(): number {
    return this.#slots.waiting;
  }

  /**
   * Scans one object: POST /scan/binary/v2 with `body` streamed. Resolves with the verdict; rejects
   * with a DsxaError (scanner problem), the body stream's own error (read problem: the object, not the
   * scanner, failed), or the caller signal's reason. The body stream is not destroyed here.
   */
  async scanBinary(body: Readable | Buffer, opts: ScanOptions = {}): Promise<ScanResult> {
    if (opts.outsideSlots) return this.#post(body, opts);
    await this.#slots.acquire(opts.signal, opts.urgent === true);
    try {
      return await this.#post(body, opts);
    } finally {
      this.#slots.release();
    }
  }

  #headers(body: Readable | Buffer, opts: ScanOptions): Record<string, string> {
    const headers: Record<string, string> = {
      'Content-Type': 'application/octet-stream',
      protected_entity: String(this.#protectedEntity),
    };
    if (this.#token) {
      headers.AUTH_TOKEN = this.#token;
      headers.AUTH = this.#token;
    }
    if (opts.metadata !== undefined) headers['X-Custom-Metadata'] = headerSafe(opts.metadata);
    if (Buffer.isBuffer(body)) headers['Content-Length'] = String(body.length);
    else if (typeof opts.size === 'number' && opts.size >= 0) headers['Content-Length'] = String(opts.size);
    return headers;
  }

  #post(body: Readable | Buffer, opts: ScanOptions): Promise<ScanResult> {
    const url = this.#shownUrl;
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    const signal = opts.signal ? AbortSignal.any([timeout, opts.signal]) : timeout;
    const t0 = performance.now();

    return new Promise<ScanResult>((resolve, reject) => {
      let settled = false;
      let bodyError: unknown;
      let stopPump = () => {};
      const headers = this.#headers(body, opts);
      const declared = headers['Content-Length'] === undefined ? null : Number(headers['Content-Length']);
      const settle = (fn: () => void) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        stopPump();
        // An answer that came before the whole body was sent leaves the connection unusable.
        if (!req.writableFinished) req.destroy();
        fn();
      };
      // A request that failed (timed out, aborted, lost) never gets its connection back: a timed-out
      // request still waiting for its answer would otherwise hold a pooled socket forever, and once
      // maxSockets of them hang, every later scan queues behind them until it times out too.
      const fail = (err: unknown) =>
        settle(() => {
          req.destroy();
          reject(err);
        });

      const onAbort = () => {
        if (timeout.aborted) fail(new DsxaError('timeout', `DSXA at ${url} did not answer within ${this.#timeoutMs} ms`));
        else fail(opts.signal!.reason);
      };

      const req = this.#http.request(this.#scanUrl, { method: 'POST', headers, agent: this.#agent }, (res) => {
        const chunks: Buffer[] = [];
        let received = 0;
        res.on('data', (c: Buffer) => {
          if (received + c.length <= MAX_RESPONSE_BYTES) chunks.push(c);
          received += c.length;
        });
        res.on('error', (e) => fail(new DsxaError('unavailable', `DSXA at ${url}: response interrupted (${describe(e)})`, { cause: e })));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          const text = Buffer.concat(chunks).toString('utf8');
          settle(() => {
            try {
              resolve({ httpStatus: status, response: interpret(url, status, text), durationMs: performance.now() - t0 });
            } catch (e) {
              reject(e);
            }
          });
        });
      });
      req.on('error', (e: NodeJS.ErrnoException) => {
        if (bodyError !== undefined) fail(bodyError);
        else fail(new DsxaError('unavailable', `DSXA at ${url} unreachable or connection lost (${describe(e)})`, { cause: e }));
      });

      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });

      if (Buffer.isBuffer(body)) req.end(body);
      else
        stopPump = pump(body, req, declared, (e) => {
          bodyError = e;
          fail(e);
        });
    });
  }

  /** Closes the kept-alive connections. The client stays usable (new connections are opened). */
  close(): void {
    this.#agent.destroy();
  }
}

/**
 * Copies `body` into `req` with backpressure. With a declared length, a stream that yields more or fewer
 * bytes (the object changed while read) fails instead of sending a request the server cannot delimit.
 * Returns a function that detaches from the body.
 */
function pump(body: Readable, req: http.ClientRequest, declared: number | null, onError: (e: unknown) => void): () => void {
  let sent = 0;
  const onData = (chunk: Buffer | string) => {
    const c = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    sent += c.length;
    if (declared !== null && sent > declared) return mismatch();
    if (!req.write(c)) body.pause();
  };
  const onDrain = () => body.resume();
  const onEnd = () => {
    if (declared !== null && sent !== declared) return mismatch();
    req.end();
  };
  const onBodyError = (e: unknown) => {
    detach();
    onError(e);
  };
  const mismatch = () => {
    detach();
    onError(new Error(`the object's length changed while it was read: ${declared} bytes expected, ${sent}${sent > declared! ? '+' : ''} read`));
  };
  const detach = () => {
    body.off('data', onData);
    body.off('end', onEnd);
    body.off('error', onBodyError);
    req.off('drain', onDrain);
    body.pause();
  };
  body.on('data', onData);
  body.once('end', onEnd);
  body.on('error', onBodyError);
  req.on('drain', onDrain);
  return detach;
}

/** HTTP header values are ASCII here: anything else (unicode paths, newlines) is percent-encoded (UTF-8). */
function headerSafe(value: string): string {
  return value.replace(/[^\t\x20-\x7e]/gu, (c) => {
    try {
      return encodeURIComponent(c);
    } catch {
      return '?'; // a lone surrogate
    }
  });
}

function describe(e: NodeJS.ErrnoException): string {
  return e.code ? `${e.code}: ${e.message}` : e.message;
}

/** Turns an HTTP answer into a verdict or a classified DsxaError. */
function interpret(url: string, status: number, text: string): DsxaResponse {
  const excerpt = text.length > 200 ? `${text.slice(0, 200)}…` : text;
  if (status === 401 || status === 403) {
    throw new DsxaError('auth', `DSXA at ${url} refused the credentials (HTTP ${status}): check the DSXA token`, { httpStatus: status });
  }
  if (status >= 500 || RETRYABLE_4XX.has(status)) {
    throw new DsxaError('unavailable', `DSXA at ${url} failed with HTTP ${status}: ${excerpt}`, { httpStatus: status });
  }
  const parsed = dsxaResponseSchema.safeParse(parseJson(text));
  if (status >= 400) {
    // DSXA answers some refusals with a verdict ("Invalid protected entity"): that is a result.
    if (parsed.success) return parsed.data;
    throw new DsxaError('bad_request', `DSXA at ${url} rejected the request (HTTP ${status}): ${excerpt}`, { httpStatus: status });
  }
  if (status >= 200 && status < 300 && parsed.success) return parsed.data;
  const what = status >= 200 && status < 300 ? 'a body that is not a DSXA verdict' : 'an unexpected status';
  throw new DsxaError('protocol', `DSXA at ${url} answered HTTP ${status} with ${what}: ${excerpt}`, { httpStatus: status });
}

/**
 * Parses an answer, keeping no NUL character (`\u0000`) in any key or string: PostgreSQL cannot store it
 * in jsonb or text, so a verdict carrying one could never be finalized (and graphile-worker cannot even
 * record the failure of its job). Each is replaced by U+FFFD.
 */
function parseJson(text: string): unknown {
  try {
    return JSON.parse(text, (_key, value: unknown) => {
      if (typeof value === 'string') return value.includes('\0') ? value.replaceAll('\0', '\uFFFD') : value;
      if (value !== null && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).some((k) => k.includes('\0'))) {
        return Object.fromEntries(Object.entries(value).map(([k, v]) => [k.replaceAll('\0', '\uFFFD'), v]));
      }
      return value;
    });
  } catch {
    return undefined;
  }
}
