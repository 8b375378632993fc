/**
 * A real HTTP proxy for fault tests: forwards every request to `target` (method, path, headers and
 * body streamed both ways) unless `fault` decides to answer it itself, e.g. with the 503 `SlowDown` of
 * S3 or the 503 `ServerBusy` of Azure, for the first N requests or while a window is open. Storage
 * servers cannot be told to throttle, so tests put this in front of them.
 */
import http from 'node:http';
import type net from 'node:net';

/** What the proxy answers instead of forwarding. */
export interface FaultAnswer {
  status: number;
  headers?: Record<string, string>;
  body?: string;
}

export interface FaultProxyOptions {
  /** Base URL of the real server, e.g. http://127.0.0.1:9000. */
  target: string;
  /** Called for each request (numbered from 1); return an answer to fault it, or null to forward it. */
  fault?: (req: http.IncomingMessage, n: number) => FaultAnswer | null;
}

export interface FaultProxy {
  url: string;
  /** Requests received, faulted and forwarded so far. */
  readonly stats: { requests: number; faulted: number; forwarded: number };
  /** Replaces the fault rule. */
  setFault(fault: FaultProxyOptions['fault']): void;
  close(): Promise<void>;
}

export async function startFaultProxy(opts: FaultProxyOptions): Promise<FaultProxy> {
  const target = new URL(opts.target);
  let fault = opts.fault;
  const stats = { requests: 0, faulted: 0, forwarded: 0 };
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    const n = ++stats.requests;
    const answer = fault?.(req, n) ?? null;
    if (answer) {
      stats.faulted++;
      req.resume();
      res.writeHead(answer.status, answer.headers ?? {}).end(answer.body ?? '');
      return;
    }
    stats.forwarded++;
    const upstream = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host } },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', (err) => {
      if (!res.headersSent) res.writeHead(502).end(`fault proxy: upstream failed: ${err.message}`);
      else res.destroy(err);
    });
    req.pipe(upstream);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    stats,
    setFault(f) {
      fault = f;
    },
    async close() {
      const closed = new Promise<void>((r) => server.close(() => r()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}
