/**
 * The HTTP server: GraphQL at /graphql (HTTP, and websockets with the graphql-ws protocol), the Ruru
 * GraphiQL page at /, /healthz (the process is up) and /readyz (database reachable, schema built).
 * What PostGraphile serves (GraphQL, GraphiQL) first passes the origin guard (src/server/origin-guard.ts):
 * a refused request gets 403 before any GraphQL, a refused websocket upgrade gets 403 before any
 * graphql-ws message. close() stops accepting, ends open websockets and waits for requests in flight.
 */
import './graphile-env.ts'; // first: before postgraphile loads
import { scannerStatusCurrent } from '../db/sql/scanner-status.ts';
import http from 'node:http';
import type net from 'node:net';
import type stream from 'node:stream';
import type pg from 'pg';
import { WebSocketServer } from 'ws';
import { useServer } from 'graphql-ws/use/ws';
import { postgraphile } from 'postgraphile';
import { makeGraphQLWSConfig } from 'postgraphile/grafserv';
import { grafserv } from 'postgraphile/grafserv/node';
import { PgSubscriber } from 'postgraphile/adaptors/pg';
import { makePreset } from '../../graphql/preset.ts';
import { log as defaultLog, type Logger } from '../log.ts';
import { createEventIntake } from '../monitor/intake.ts';
import { DEFAULT_API_LIMITS, type ApiLimits } from './api-limits.ts';
import { AuthError, identify, type AuthOptions, type Identity } from './auth.ts';
import { checkOrigin, refusalBody, type OriginPolicy, type OriginVerdict } from './origin-guard.ts';

/** What an allowed foreign browser origin may send (CORS preflight answer). */
const CORS_PREFLIGHT = {
  'access-control-allow-methods': 'GET, POST, OPTIONS',
  'access-control-allow-headers': 'authorization, content-type, accept',
  'access-control-max-age': '600',
};

export interface ApiServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

export async function startApiServer(args: {
  pool: pg.Pool;
  auth: AuthOptions;
  port: number;
  host?: string;
  /** Event intake (POST /events/:integrationId): largest body accepted. */
  eventMaxBytes?: number;
  /** What one GraphQL request may ask; unset ones take DEFAULT_API_LIMITS. */
  limits?: Partial<ApiLimits>;
  /** Browser origins allowed besides the server's own (and, in open mode, loopback ones). */
  allowedOrigins?: readonly string[];
  /** Event intake: largest skew of a signed request's X-DSX-Timestamp, in seconds (default 300). */
  eventMaxSkewS?: number;
  log?: Logger;
}): Promise<ApiServer> {
  const limits: ApiLimits = { ...DEFAULT_API_LIMITS, ...args.limits };
  const policy: OriginPolicy = { open: args.auth.mode === 'open', allowedOrigins: args.allowedOrigins ?? [], listenHost: args.host };
  const guard = (req: http.IncomingMessage): OriginVerdict => checkOrigin(policy, { origin: req.headers.origin, host: req.headers.host });
  // Our own LISTEN connection (one pool client), released by close() so the pool can end.
  const subscriber = new PgSubscriber(args.pool);
  // HTTP requests are authenticated here, before GraphQL, so a missing or bad token is a 401 with
  // extensions.code UNAUTHENTICATED (an error thrown from the GraphQL context comes out of grafserv as
  // a 500 without its code). The identity rides along to the context; websockets authenticate there.
  const identities = new WeakMap<http.IncomingMessage, Identity>();
  const pgl = postgraphile(makePreset({ pool: args.pool, subscriber, auth: args.auth, limits, identityOf: (req) => identities.get(req) }));
  await pgl.getSchema(); // fail at start, not at the first request, if the schema cannot be built
  const serv = pgl.createServ(grafserv);
  const handler = serv.createHandler();
  const intake = createEventIntake({ pool: args.pool, log: args.log ?? defaultLog, maxBytes: args.eventMaxBytes ?? 1_048_576, maxSkewS: args.eventMaxSkewS });
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (path.startsWith('/events/') || path === '/events') {
      void intake(req, res);
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
      return;
    }
    if (path === '/readyz') {
      // Ready when the database answers. The scanner's state is reported beside it (the API works without
      // it; scans wait for it): "scanner unavailable since ..." when a live worker cannot reach DSXA.
      scannerStatusCurrent(args.pool, 120_000).then(
        (scanner) => {
          const body = scanner && scanner.state !== 'ok'
            ? { status: 'ready', scanner: { state: scanner.state, since: scanner.since, error: scanner.error, message: `scanner ${scanner.state} since ${scanner.since.toISOString()}: scans wait until it answers` } }
            : { status: 'ready', scanner: scanner ? { state: 'ok', since: scanner.since } : { state: 'unknown', message: 'no worker with the scan role is reporting' } };
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
        },
        (err: Error) => res.writeHead(503, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'unavailable', error: err.message })),
      );
      return;
    }
    const verdict = guard(req);
    if (!verdict.ok) {
      res.writeHead(403, { 'content-type': 'application/json' }).end(refusalBody(verdict));
      return;
    }
    if (verdict.corsOrigin) {
      res.setHeader('access-control-allow-origin', verdict.corsOrigin);
      res.setHeader('vary', 'Origin');
      if (req.method === 'OPTIONS') {
        res.writeHead(204, CORS_PREFLIGHT).end();
        return;
      }
    }
    if (path === '/graphql' && (req.method === 'POST' || req.method === 'GET')) {
      identify(args.auth, req.headers.authorization).then(
        (who) => {
          identities.set(req, who);
          handler(req, res);
        },
        (err: Error) => {
          const unauthenticated = err instanceof AuthError;
          const body = unauthenticated
            ? { message: err.message, extensions: { code: 'UNAUTHENTICATED' } }
            : { message: `authentication is unavailable: ${err.message}`, extensions: { code: 'SERVICE_UNAVAILABLE' } };
          res
            .writeHead(unauthenticated ? 401 : 503, { 'content-type': 'application/json', ...(unauthenticated ? { 'www-authenticate': 'Bearer' } : {}) })
            .end(JSON.stringify({ errors: [body] }));
        },
      );
      return;
    }
    handler(req, res);
  });
  // Websockets: graphql-ws over grafserv's own configuration, on a ws server of ours because grafserv's
  // takes ws's default message limit (100 MiB, read and parsed before authentication).
  const wsServer = new WebSocketServer({ noServer: true, maxPayload: limits.maxBodyBytes });
  const graphqlWs = useServer(makeGraphQLWSConfig(serv) as Parameters<typeof useServer>[0], wsServer);
  const sockets = new Set<stream.Duplex>();
  server.on('upgrade', (req, socket, head) => {
    if (!serv.shouldHandleUpgrade(req, socket, head)) {
      socket.destroy();
      return;
    }
    const verdict = guard(req);
    if (!verdict.ok) {
      const body = refusalBody(verdict);
      socket.on('error', () => socket.destroy()); // a client gone before the answer is nobody's error
      socket.end(`HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
      return;
    }
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    wsServer.handleUpgrade(req, socket, head, (ws) => wsServer.emit('connection', ws, req));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(args.port, args.host ?? '127.0.0.1', () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  const shown = args.host && args.host !== '0.0.0.0' && args.host !== '::' ? args.host : '127.0.0.1';
  return {
    url: `http://${shown}:${port}`,
    port,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      for (const s of sockets) s.end();
      const grace = setTimeout(() => {
        server.closeAllConnections();
        for (const s of sockets) s.destroy();
      }, 3000);
      await closed;
      clearTimeout(grace);
      await graphqlWs.dispose(); // closes the ws server too
      subscriber.release();
      await serv.release(); // releases the PostGraphile instance too
    },
  };
}
