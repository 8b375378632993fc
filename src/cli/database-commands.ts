/**
 * `dsx-connect psql`: psql on the product's database, as the product connects (the embedded server's
 * owner role, or DATABASE_URL). The connection travels in psql's environment (PGHOST, PGUSER,
 * PGPASSWORD, ...), which only the same OS user can read, never on its command line, which `ps` shows
 * to every user of the machine.
 */
import { spawn } from 'node:child_process';
import type { Command } from 'commander';
import { loadConfig } from '../config.ts';
import { openDatabase } from '../db/connect.ts';
import { action, UsageError } from './common.ts';

/** libpq's environment variable for each connection-string parameter we pass on. */
const PARAMETER_ENV: Record<string, string> = {
  host: 'PGHOST',
  hostaddr: 'PGHOSTADDR',
  port: 'PGPORT',
  user: 'PGUSER',
  password: 'PGPASSWORD',
  dbname: 'PGDATABASE',
  sslmode: 'PGSSLMODE',
  sslrootcert: 'PGSSLROOTCERT',
  sslcert: 'PGSSLCERT',
  sslkey: 'PGSSLKEY',
  application_name: 'PGAPPNAME',
  connect_timeout: 'PGCONNECT_TIMEOUT',
  options: 'PGOPTIONS',
  target_session_attrs: 'PGTARGETSESSIONATTRS',
};

/** Inherited variables that would otherwise mix another server's settings into ours. */
const CLEARED = [...Object.values(PARAMETER_ENV), 'PGPASSFILE', 'PGSERVICE', 'PGSERVICEFILE', 'PGREQUIRESSL'];

/**
 * The libpq environment for a `postgres://` URL. Throws a UsageError for a URL parameter that has no
 * libpq variable (rather than connect psql somewhere subtly different from the product).
 */
export function libpqEnvironment(connectionString: string): Record<string, string> {
  let u: URL;
  try {
    u = new URL(connectionString);
  } catch {
    throw new UsageError('DATABASE_URL is not a URL (postgres://user:password@host:port/database)');
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') throw new UsageError(`DATABASE_URL must start with postgres:// (got ${u.protocol}//)`);
  const env: Record<string, string> = {};
  if (u.hostname) env.PGHOST = decodeURIComponent(u.hostname.replace(/^\[(.*)\]$/, '$1'));
  if (u.port) env.PGPORT = u.port;
  if (u.username) env.PGUSER = decodeURIComponent(u.username);
  if (u.password) env.PGPASSWORD = decodeURIComponent(u.password);
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (database) env.PGDATABASE = database;
  for (const [key, value] of u.searchParams) {
    // node-postgres' `ssl=true` is libpq's sslmode=require.
    if (key === 'ssl') {
      if (value === 'true' || value === '1') env.PGSSLMODE ??= 'require';
      continue;
    }
    const name = PARAMETER_ENV[key];
    if (!name) throw new UsageError(`DATABASE_URL parameter ${JSON.stringify(key)} has no psql equivalent here: run psql with that URL yourself`);
    env[name] = value;
  }
  return env;
}

/** Runs psql with `args` and the connection in its environment; resolves with its exit code. */
function runPsql(args: string[], connection: Record<string, string>): Promise<number> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of CLEARED) delete env[name];
  Object.assign(env, connection);
  const child = spawn('psql', args, { stdio: 'inherit', env });
  // Ctrl-C reaches psql too (same terminal process group): psql cancels its query and goes on; we
  // must not die under it. SIGTERM is passed on.
  const ignore = () => {};
  const forward = () => child.kill('SIGTERM');
  process.on('SIGINT', ignore);
  process.on('SIGTERM', forward);
  return new Promise<number>((resolve, reject) => {
    child.once('error', (err: NodeJS.ErrnoException) => {
      reject(
        err.code === 'ENOENT'
          ? new UsageError('psql was not found on PATH: install the PostgreSQL client (Debian/Ubuntu: apt install postgresql-client; macOS: brew install libpq)')
          : err,
      );
    });
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 + 15 : 1)));
  }).finally(() => {
    process.removeListener('SIGINT', ignore);
    process.removeListener('SIGTERM', forward);
  });
}

/** Registers `psql`. */
export function registerDatabaseCommands(program: Command): void {
  program
    .command('psql')
    .description(
      "start psql on the product's database, connected as the product connects (the embedded server's owner role, or DATABASE_URL); " +
        'starts the embedded server for the session if it is not running. Arguments go to psql: dsx-connect psql -- -c "select 1"',
    )
    .argument('[args...]', 'arguments for psql (put them after --)')
    .allowUnknownOption()
    .action(
      action(async (args: string[]) => {
        const config = loadConfig();
        const db = await openDatabase(config, { migrate: false, poolSize: 1 });
        try {
          process.exitCode = await runPsql(args, libpqEnvironment(db.url));
        } finally {
          await db.close();
        }
      }),
    );
}
