/** `dsx-connect server`: the GraphQL API (and what `dev` uses to run it alongside the workers). */
import type { Command } from 'commander';
import { loadConfig, type Config } from '../config.ts';
import { makePool } from '../db/connect.ts';
import { log } from '../log.ts';
import type { ApiServer } from '../server/http.ts';
import { action, UsageError } from './common.ts';
import { openCliDatabase } from './database.ts';
import { intInRange, LIMITS } from './options.ts';
import { untilStopSignal } from './signals.ts';

const OPEN_WARNING = [
  '',
  '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!',
  '!!  The GraphQL API is OPEN: no token is needed and every caller is an OPERATOR.        !!',
  '!!  For development only. Set DSX_JWT_SECRET (or run `dsx-connect server`) to require   !!',
  '!!  bearer tokens.                                                                      !!',
  '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!',
  '',
].join('\n');

/** Starts the API on its own pool of `dbUrl`; open mode prints a loud warning on stderr. */
export async function startApi(config: Config, dbUrl: string, opts: { open: boolean; port?: number; host?: string }) {
  // Loaded here, not at the top: PostGraphile and its schema tooling are ~50 MB of resident memory that
  // every other command (and every worker process) would carry for nothing.
  const { startApiServer } = await import('../server/http.ts');
  const pool = makePool(dbUrl, 12);
  let server: ApiServer;
  try {
    server = await startApiServer({
      pool,
      port: opts.port ?? config.port,
      host: opts.host,
      eventMaxBytes: config.eventMaxBytes,
      limits: config.apiLimits,
      allowedOrigins: config.apiAllowedOrigins,
      eventMaxSkewS: config.eventMaxSkewS,
      log,
      auth: { mode: opts.open ? 'open' : 'token', jwtSecret: config.jwtSecret, pool },
    });
  } catch (err) {
    await pool.end();
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new UsageError(`cannot serve the API on port ${opts.port ?? config.port}: it is in use`, {
        hint: 'stop what listens there (another dsx-connect dev or server?), or choose another port with PORT or --port',
        cause: err,
      });
    }
    throw err;
  }
  if (opts.open) process.stderr.write(OPEN_WARNING);
  else if (!config.jwtSecret) log.warn('DSX_JWT_SECRET is not set: only API tokens (dsx-connect token create) are accepted');
  return {
    server,
    async close() {
      await server.close();
      await pool.end();
    },
  };
}

export function registerServerCommand(program: Command): void {
  program
    .command('server')
    .description('serve the GraphQL API: /graphql (HTTP and websockets), GraphiQL at /, /healthz, /readyz')
    .option('--port <n>', `port to listen on (${LIMITS.port.min}-${LIMITS.port.max}; default PORT, 5678)`)
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--open', 'no authentication, everyone is an operator (development only)')
    .action(
      action(async (o: { port?: string; host: string; open?: boolean }) => {
        const stopped = untilStopSignal();
        const port = o.port === undefined ? undefined : intInRange('--port', o.port, LIMITS.port);
        const config = loadConfig();
        const db = await openCliDatabase(config, { poolSize: 2 });
        try {
          const api = await startApi(config, db.url, { open: !!o.open, port, host: o.host });
          process.stdout.write(`GraphQL API: ${api.server.url}/graphql (GraphiQL: ${api.server.url}/)\n`);
          const sig = await stopped;
          // The API first (requests in flight finish, websockets end), the database last.
          log.info({ signal: sig }, 'stopping the API server');
          await api.close();
        } finally {
          await db.close();
        }
        log.info('API server stopped');
      }),
    );
}
