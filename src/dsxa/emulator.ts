/**
 * DSXA emulator: the same paths, headers and JSON as DSXA, for development, tests and benchmarks.
 * Verdicts: larger than maxFileSize -> Not Scanned ("File Size Too Large"); EICAR anywhere -> Malicious;
 * an encrypted ZIP -> Not Scanned ("encrypted file"); everything else (empty files too) -> Benign.
 * Bodies are inspected as they stream in, never buffered whole. Configurable latency, capacity (scans
 * served at once; excess requests wait in FIFO order) and fault injection (HTTP 500/503, hanging
 * requests, dropped connections).
 */
import crypto from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import { StreamInspector, type Inspection } from './detect.ts';

/** Faults the emulator can inject into a scan request. */
export type FaultKind = '500' | '503' | 'hang' | 'drop';

/** All fault kinds; `failRate` is split evenly among those enabled. */
export const FAULT_KINDS: readonly FaultKind[] = ['500', '503', 'hang', 'drop'];

/** How the emulator listens and behaves. All but port/host can be changed later with setOptions(). */
export interface EmulatorOptions {
  /** 0 (default) = any free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** When set, scan requests need it in AUTH_TOKEN or AUTH, or get 401. */
  token?: string | null;
  /** Added to every scan, inside its capacity slot, after the body was read. Default 0. */
  latencyMs?: number;
  /** Scans served at once; more wait in FIFO order. Default 64. */
  capacity?: number;
  /** Larger bodies get Not Scanned / "File Size Too Large". Default 2 GiB. */
  maxFileSize?: number;
  /** Fraction (0..1) of scan requests that fail with a fault. Default 0. */
  failRate?: number;
  /** Faults to inject (default all of FAULT_KINDS), used in turn so each gets an even share. */
  faultKinds?: readonly FaultKind[];
  /**
   * A fault for particular requests, whatever `failRate` says: given the request's X-Custom-Metadata
   * (the scan job sends the object's key there), the fault to inject, or null. For tests of one object
   * the scanner keeps failing on.
   */
  faultOn?: ((metadata: string) => FaultKind | null) | null;
}

/** Counters since start. */
export interface EmulatorStats {
  /** Scan requests received (POST /scan/...), whatever became of them. */
  requests: number;
  /** Scans answered with a verdict, total. */
  scans: number;
  /** Scans answered, by verdict. */
  verdicts: Record<string, number>;
  /** Requests refused before scanning (401 auth, 400 invalid protected entity). */
  rejected: number;
  /** Faults injected, by kind. */
  faults: Record<string, number>;
  /** Scans being served now. */
  inFlight: number;
  /** Requests waiting for a capacity slot now. */
  queued: number;
  /** Most scans ever served at once. */
  maxConcurrent: number;
}

/** A running emulator. */
export interface Emulator {
  /** Base URL, e.g. http://127.0.0.1:41234 */
  url: string;
  port: number;
  stats(): EmulatorStats;
  /** Changes behaviour from now on (port and host are ignored). */
  setOptions(partial: Partial<EmulatorOptions>): void;
  /** Stops listening and destroys every connection, hanging ones included. */
  close(): Promise<void>;
}

type Behaviour = {
  token: string | null;
  latencyMs: number;
  capacity: number;
  maxFileSize: number;
  failRate: number;
  faultKinds: readonly FaultKind[];
  faultOn: ((metadata: string) => FaultKind | null) | null;
};

type VerdictBody = { verdict: string; verdict_details: Record<string, string> };

const BENIGN: VerdictBody = { verdict: 'Benign', verdict_details: { event_description: 'File identified as benign' } };
const MALICIOUS: VerdictBody = {
  verdict: 'Malicious',
  verdict_details: { event_description: 'File identified as malicious', threat_type: 'VIRUS' },
};
const notScanned = (reason: string): VerdictBody => ({
  verdict: 'Not Scanned',
  verdict_details: { event_description: 'File was not scanned', reason },
});
const INVALID_PROTECTED_ENTITY: VerdictBody = { verdict: 'Not Scanned', verdict_details: { reason: 'Invalid protected entity' } };

/** The verdict rules, first match wins. */
function verdictOf(i: Inspection, maxFileSize: number): VerdictBody {
  if (i.size > maxFileSize) return notScanned('File Size Too Large');
  if (i.eicar) return MALICIOUS;
  if (i.encryptedZip) return notScanned('encrypted file');
  return BENIGN;
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

function header(req: http.IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Decodes base64 text arriving in arbitrary pieces (whitespace ignored) without buffering it whole. */
class Base64Decoder {
  #rest = '';
  push(chunk: Buffer): Buffer {
    const text = this.#rest + chunk.toString('latin1').replace(/[^A-Za-z0-9+/=_-]/g, '');
    const whole = text.length - (text.length % 4);
    this.#rest = text.slice(whole);
    return Buffer.from(text.slice(0, whole), 'base64');
  }
  end(): Buffer {
    return Buffer.from(this.#rest, 'base64');
  }
}

/** Starts an emulator; close() it when done. */
export async function startEmulator(initial: EmulatorOptions = {}): Promise<Emulator> {
  const b: Behaviour = {
    token: initial.token ?? null,
    latencyMs: initial.latencyMs ?? 0,
    capacity: initial.capacity ?? 64,
    maxFileSize: initial.maxFileSize ?? 2 * 1024 ** 3,
    failRate: initial.failRate ?? 0,
    faultKinds: initial.faultKinds ?? FAULT_KINDS,
    faultOn: initial.faultOn ?? null,
  };
  const stats: EmulatorStats = { requests: 0, scans: 0, verdicts: {}, rejected: 0, faults: {}, inFlight: 0, queued: 0, maxConcurrent: 0 };
  const waiting: (() => void)[] = [];
  const sockets = new Set<net.Socket>();
  // Latency sleeps in progress: close() ends them, or a closed emulator's timers would keep the process
  // alive for up to latencyMs (a test with latencyMs 120_000 exited two minutes late).
  const sleeping = new Map<NodeJS.Timeout, () => void>();
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        sleeping.delete(timer);
        resolve();
      }, ms);
      sleeping.set(timer, resolve);
    });
  let faultTurn = 0;
  let closed = false;

  const enter = () => {
    stats.inFlight++;
    stats.maxConcurrent = Math.max(stats.maxConcurrent, stats.inFlight);
  };
  /** A capacity slot; a released slot goes straight to the oldest waiter. */
  const acquire = (): Promise<void> => {
    if (stats.inFlight < b.capacity && waiting.length === 0) {
      enter();
      return Promise.resolve();
    }
    stats.queued++;
    return new Promise<void>((resolve) =>
      waiting.push(() => {
        stats.queued--;
        enter();
        resolve();
      }),
    );
  };
  const admitWaiting = () => {
    while (waiting.length > 0 && (stats.inFlight < b.capacity || closed)) waiting.shift()!();
  };
  const release = () => {
    stats.inFlight--;
    admitWaiting();
  };

  /** Decides whether this request gets a fault, and which (kinds in turn: an even split). */
  const pickFault = (req: http.IncomingMessage): FaultKind | null => {
    const forced = b.faultOn?.(header(req, 'x-custom-metadata') ?? '') ?? null;
    if (forced !== null) return forced;
    if (b.failRate <= 0 || Math.random() >= b.failRate) return null;
    const kinds = b.faultKinds.length > 0 ? b.faultKinds : FAULT_KINDS;
    return kinds[faultTurn++ % kinds.length]!;
  };

  async function scan(req: http.IncomingMessage, res: http.ServerResponse, base64: boolean): Promise<void> {
    stats.requests++;
    if (b.token !== null && header(req, 'auth_token') !== b.token && header(req, 'auth') !== b.token) {
      stats.rejected++;
      req.resume();
      return send(res, 401, { error: 'Unauthorized', message: 'missing or invalid AUTH_TOKEN' });
    }
    const pe = header(req, 'protected_entity');
    if (pe !== undefined && !/^\s*[1-9]\d*\s*$/.test(pe)) {
      stats.rejected++;
      req.resume();
      return send(res, 400, INVALID_PROTECTED_ENTITY);
    }
    const fault = pickFault(req);
    if (fault !== null) {
      stats.faults[fault] = (stats.faults[fault] ?? 0) + 1;
      if (fault === 'drop') return void req.socket.destroy();
      req.resume();
      if (fault === 'hang') return; // never answered; close() destroys the socket
      return send(res, Number(fault), { error: fault === '503' ? 'Service Unavailable' : 'Internal Server Error' });
    }

    await acquire();
    try {
      const t0 = process.hrtime.bigint();
      const inspector = new StreamInspector();
      const decoder = base64 ? new Base64Decoder() : null;
      for await (const chunk of req) {
        inspector.update(decoder ? decoder.push(chunk as Buffer) : (chunk as Buffer));
      }
      if (decoder) inspector.update(decoder.end());
      if (b.latencyMs > 0) await sleep(b.latencyMs);
      if (closed) return void res.destroy();
      const found = inspector.finish();
      const v = verdictOf(found, b.maxFileSize);
      stats.scans++;
      stats.verdicts[v.verdict] = (stats.verdicts[v.verdict] ?? 0) + 1;
      send(res, 200, {
        scan_guid: crypto.randomBytes(16).toString('hex'),
        ...v,
        file_info: { file_type: found.fileType, file_size_in_bytes: found.size, file_hash: found.sha256 },
        protected_entity: pe === undefined ? 1 : Number(pe),
        scan_duration_in_microseconds: Number((process.hrtime.bigint() - t0) / 1000n),
        container_files_scanned: 0,
        container_files_scanned_size: 0,
        'X-Custom-Metadata': header(req, 'x-custom-metadata') ?? '',
        last_update_time: new Date().toISOString(),
      });
    } finally {
      release();
    }
  }

  const server = http.createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    // A client that went away mid-body: nothing to answer.
    const run = (p: Promise<void>) => p.catch(() => res.destroy());
    if (req.method === 'POST' && path === '/scan/binary/v2') return void run(scan(req, res, false));
    if (req.method === 'POST' && path === '/scan/base64/v2') return void run(scan(req, res, true));
    req.resume();
    if (req.method === 'GET' && path === '/healthz') return send(res, 200, { status: 'ok' });
    send(res, 404, { error: 'Not Found', message: `no such endpoint: ${req.method} ${path}` });
  });
  server.keepAliveTimeout = 30_000;
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const host = initial.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(initial.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;

  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    stats: () => ({ ...stats, verdicts: { ...stats.verdicts }, faults: { ...stats.faults } }),
    setOptions(partial) {
      const { port: _port, host: _host, ...rest } = partial;
      for (const [k, v] of Object.entries(rest)) if (v !== undefined) Object.assign(b, { [k]: v });
      if ('token' in rest) b.token = rest.token ?? null;
      admitWaiting(); // a larger capacity lets waiting requests in now
    },
    close: () =>
      new Promise<void>((resolve) => {
        closed = true;
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
        admitWaiting(); // their sockets are gone: they end at once
        for (const [timer, wake] of sleeping) {
          clearTimeout(timer);
          wake();
        }
        sleeping.clear();
      }),
  };
}
