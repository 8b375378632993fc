/**
 * The HTTP server: GraphQL at /graphql (HTTP, and websockets with the graphql-ws protocol), the Ruru
 * GraphiQL page at /, /healthz (the process is up) and /readyz (database reachable, schema built).
 * close() stops accepting, ends open websockets and waits for requests in flight.
 */
import './graphile-env.ts'; // first: before postgraphile loads
import http from 'node:http';
import type net from 'node:net';
import type pg from 'pg';
import { postgraphile } from 'postgraphile';
import { grafserv } from 'postgraphile/grafserv/node';
import { PgSubscriber } from 'postgraphile/adaptors/pg';
import { makePreset } from '../../graphql/preset.ts';
import { log as defaultLog, type Logger } from '../log.ts';
import { createEventIntake } from '../monitor/intake.ts';
import { AuthError, identify, type AuthOptions, type Identity } from './auth.ts';

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
  /** Event intake: largest skew of a signed request's X-DSX-Timestamp, in seconds (default 300). */
  eventMaxSkewS?: number;
  log?: Logger;
}): Promise<ApiServer> {
  // Our own LISTEN connection (one pool client), released by close() so the pool can end.
  const subscriber = new PgSubscriber(args.pool);
  // HTTP requests are authenticated here, before GraphQL, so a missing or bad token is a 401 with
  // extensions.code UNAUTHENTICATED (an error thrown from the GraphQL context comes out of grafserv as
  // a 500 without its code). The identity rides along to the context; websockets authenticate there.
  const identities = new WeakMap<http.IncomingMessage, Identity>();
  const pgl = postgraphile(makePreset({ pool: args.pool, subscriber, auth: args.auth, identityOf: (req) => identities.get(req) }));
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
      args.pool.query('select 1').then(
        () => res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ready"}'),
        (err: Error) => res.writeHead(503, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'unavailable', error: err.message })),
      );
      return;
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
  const upgrade = await serv.getUpgradeHandler();
  const sockets = new Set<net.Socket>();
  server.on('upgrade', (req, socket, head) => {
    if (upgrade && serv.shouldHandleUpgrade(req, socket, head)) {
      sockets.add(socket as net.Socket);
      socket.once('close', () => sockets.delete(socket as net.Socket));
      upgrade(req, socket, head);
    } else {
      socket.destroy();
    }
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
      subscriber.release();
      await serv.release(); // releases the PostGraphile instance too
    },
  };
}
