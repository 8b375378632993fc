/**
 * A real webhook receiver for tests: an HTTP (or HTTPS) server on a loopback address that records every
 * TCP connection and every request, and answers with `respond`. Closed in the test's teardown.
 */
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Test } from 'tap';

/** One request as the receiver got it. */
export interface ReceivedRequest {
  method: string | undefined;
  url: string | undefined;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** The TLS server name the client sent (SNI), for an HTTPS receiver. */
  servername?: string | false;
}

/** A running receiver. */
export interface Receiver {
  port: number;
  /** TCP connections accepted so far (counted before any TLS handshake or HTTP parsing). */
  connections: () => number;
  requests: ReceivedRequest[];
}

/** Starts a receiver on `host`; null when this machine cannot listen there (e.g. no IPv6 loopback). */
export async function startReceiver(
  t: Test,
  opts: {
    host?: '127.0.0.1' | '::1';
    respond?: (req: http.IncomingMessage, res: http.ServerResponse) => void;
    tls?: { cert: string; key: string };
  } = {},
): Promise<Receiver | null> {
  const requests: ReceivedRequest[] = [];
  let connections = 0;
  const respond = opts.respond ?? ((_req, res) => res.writeHead(204).end());
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const servername = (req.socket as { servername?: string | false }).servername;
      requests.push({ method: req.method, url: req.url, headers: req.headers, body: Buffer.concat(chunks), ...(opts.tls ? { servername } : {}) });
      respond(req, res);
    });
  };
  const server = opts.tls ? https.createServer({ cert: opts.tls.cert, key: opts.tls.key }, handler) : http.createServer(handler);
  server.on('connection', () => connections++);
  const listening = await new Promise<boolean>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRNOTAVAIL' || err.code === 'EAFNOSUPPORT') resolve(false);
      else reject(err);
    });
    server.listen(0, opts.host ?? '127.0.0.1', () => resolve(true));
  });
  if (!listening) return null;
  t.teardown(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { port: (server.address() as AddressInfo).port, connections: () => connections, requests };
}
