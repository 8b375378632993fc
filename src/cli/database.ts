/**
 * The database a CLI command uses, said in words when it cannot be reached. A command run in another
 * terminal without the running instance's settings (another DATABASE_URL, DSX_DATA_DIR or
 * DSX_EMBEDDED_PG_PORT) would otherwise fail with a bare "ECONNREFUSED" or work on another database.
 */
import fs from 'node:fs';
import path from 'node:path';
import { PROJECT_DIR, type Config } from '../config.ts';
import { openDatabase, type Database } from '../db/connect.ts';
import { cliActor } from './cli-actor.ts';
import { UsageError } from './usage-error.ts';

/** Error codes of a database that is not there or refuses us (network errors, then PostgreSQL SQLSTATEs). */
const UNREACHABLE = new Set([
  'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET',
  '28P01', // invalid_password
  '28000', // invalid_authorization_specification
  '3D000', // invalid_catalog_name: the database does not exist
  '57P03', // cannot_connect_now: starting up or shutting down
]);

/** `postgres://user@host:port/db` without the password, for messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.password = '';
    return u.toString();
  } catch {
    return '(not a valid URL)';
  }
}

/** The database this configuration points at, in words. */
export function describeDatabase(config: Config): string {
  return config.databaseUrl
    ? `DATABASE_URL ${redactUrl(config.databaseUrl)}`
    : `the embedded PostgreSQL on 127.0.0.1:${config.embeddedPgPort} (data in ${path.join(config.dataDir, 'pg')})`;
}

const SAME_SETTINGS_HINT =
  'a running instance (npm start, dsx-connect dev|worker|server) and this command must use the same DATABASE_URL, ' +
  `or DSX_DATA_DIR and DSX_EMBEDDED_PG_PORT for the embedded one; put them in ${path.join(PROJECT_DIR, '.env')} so that every command reads them`;

function errorCode(err: unknown): string | undefined {
  const e = err as { code?: unknown; errors?: { code?: unknown }[]; cause?: unknown };
  if (typeof e?.code === 'string') return e.code;
  if (typeof e?.errors?.[0]?.code === 'string') return e.errors[0].code;
  return e?.cause ? errorCode(e.cause) : undefined;
}

/** The port and pid of the server running from `dataDir/pg`, from its postmaster.pid, if it is alive. */
function runningEmbeddedServer(dataDir: string): { pid: number; port: number } | undefined {
  let lines: string[];
  try {
    lines = fs.readFileSync(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8').split('\n');
  } catch {
    return undefined;
  }
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || pid <= 0 || !Number.isInteger(port)) return undefined;
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return undefined;
  }
  return { pid, port };
}

/**
 * Rewrites a failure to open the database into a UsageError that names the database and says what to
 * do; other errors are returned as they are.
 */
export function explainDatabaseError(err: unknown, config: Config): unknown {
  if (!config.databaseUrl) {
    const running = runningEmbeddedServer(config.dataDir);
    if (running && running.port !== config.embeddedPgPort) {
      return new UsageError(
        `cannot use ${describeDatabase(config)}: the server of that data directory is already running on port ${running.port} (pid ${running.pid})`,
        { hint: `use DSX_EMBEDDED_PG_PORT=${running.port}, as the instance that started it does (environment or ${path.join(PROJECT_DIR, '.env')})`, cause: err },
      );
    }
  }
  const code = errorCode(err);
  if (!code || !UNREACHABLE.has(code)) return err;
  const why = (err as Error).message || code;
  return new UsageError(`cannot connect to ${describeDatabase(config)}: ${why}`, { hint: SAME_SETTINGS_HINT, cause: err });
}

/**
 * Opens the database for a CLI command like openDatabase, with errors that name the database. With
 * `announce`, says on stderr when the command had to start the embedded server itself: nothing was
 * running where the configuration points, so a running instance, if any, uses other settings.
 */
export async function openCliDatabase(config: Config, opts: Parameters<typeof openDatabase>[1] & { announce?: boolean } = {}): Promise<Database> {
  let db: Database;
  try {
    // Every change a command makes is audited under the person at the terminal, not the shared role.
    db = await openDatabase(config, { actor: cliActor(), ...opts });
  } catch (err) {
    throw explainDatabaseError(err, config);
  }
  if (opts.announce && db.embedded?.owned) {
    process.stderr.write(`note: nothing was listening on 127.0.0.1:${config.embeddedPgPort}, so this command started the embedded PostgreSQL of ${config.dataDir} for its duration\n`);
  }
  return db;
}
