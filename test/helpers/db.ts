/**
 * Per-test databases cloned from the migrated template that test/run.ts prepares, and their part of
 * the leak check (test/helpers/leak-check.ts): when the test ends, nothing may still be connected to
 * its database. As in the product, a test database is owned by, and connected to as, the owner role
 * (not a superuser); only creating and dropping databases (and what a test explicitly does as
 * administrator) uses the superuser of DSX_TEST_ADMIN_URL.
 */
import crypto from 'node:crypto';
import pg from 'pg';
import type { Test } from 'tap';
import { databaseUrl } from '../../src/db/embedded.ts';
import { makePool } from '../../src/db/connect.ts';
import { checkedOutQueries, holderOfBackend, leaksOnDatabase, reportLeaks } from './leaks.ts';

/** SQLSTATE object_in_use: DROP DATABASE found sessions still connected (after waiting 5 s for them). */
const OBJECT_IN_USE = '55006';

export interface TestDatabase {
  /** The owner role's connection string (what the product would use). */
  url: string;
  name: string;
  /** A pool on `url`. */
  pool: pg.Pool;
}

/** The servers test/run.ts prepared: superuser URL, owner URL (any database), the template's name. */
export function testServer(): { adminUrl: string; ownerUrl: string; owner: string; template: string } {
  const adminUrl = process.env.DSX_TEST_ADMIN_URL;
  const ownerUrl = process.env.DSX_TEST_OWNER_URL;
  const template = process.env.DSX_TEST_TEMPLATE;
  if (!adminUrl || !ownerUrl || !template) throw new Error('run tests through `npm test` (test/run.ts prepares the database server)');
  return { adminUrl, ownerUrl, owner: decodeURIComponent(new URL(ownerUrl).username), template };
}

/** Runs `sql` as the superuser on `database` (default: the maintenance database). */
export async function adminQuery(sql: string, database?: string): Promise<pg.QueryResult> {
  const { adminUrl } = testServer();
  const c = new pg.Client({ connectionString: database ? databaseUrl(adminUrl, database) : adminUrl });
  await c.connect();
  try {
    return await c.query(sql);
  } finally {
    await c.end();
  }
}

/** Client sessions connected to `database`, described for a leak report. */
async function sessionsOn(database: string): Promise<string[]> {
  const { rows } = await adminQuery(
    `select pid, application_name, state, left(regexp_replace(query, '\\s+', ' ', 'g'), 80) as query
       from pg_stat_activity where datname = ${pg.escapeLiteral(database)} and backend_type = 'client backend' and pid <> pg_backend_pid()`,
  );
  return rows.map((r: { pid: number; application_name: string; state: string; query: string }) => {
    const holder = holderOfBackend(r.pid);
    return `session pid ${r.pid} still connected to ${database} (application ${JSON.stringify(r.application_name)}, ${r.state}, last query: ${r.query})${holder ? `, ${holder}` : ''}`;
  });
}

/**
 * The end of a test database: its pool is ended (a client still checked out is a leak: a query, a
 * worker or a LISTEN the test did not stop), other pools and clients still connected to it are
 * reported and closed, then the database is dropped without `force`, so that a session of any other
 * origin (a child process, a server) is seen; only when one is left is it named and the drop forced.
 */
async function dropTestDatabase(name: string, pool: pg.Pool): Promise<void> {
  const problems: string[] = [];
  const busy = pool.totalCount - pool.idleCount;
  if (busy > 0) {
    problems.push(`the pool of test database ${name} still has ${busy} client(s) checked out (a query, worker or LISTEN still running; last queries: ${checkedOutQueries(pool).join(' | ')})`);
  }
  problems.push(...(await leaksOnDatabase(name, pool)));
  const ending = pool.end();
  let timer: NodeJS.Timeout | undefined;
  const ended = await Promise.race([ending.then(() => true), new Promise<false>((r) => (timer = setTimeout(() => r(false), 5_000)))]);
  clearTimeout(timer);
  if (!ended) void ending.catch(() => {});
  let force = false;
  try {
    await adminQuery(`drop database if exists ${name}`);
  } catch (err) {
    if ((err as { code?: string }).code !== OBJECT_IN_USE) throw err;
    problems.push(...(await sessionsOn(name)));
    force = true;
  }
  if (force) await adminQuery(`drop database if exists ${name} with (force)`);
  reportLeaks(problems);
}

/**
 * A fresh database with the whole schema, owned by the owner role, dropped when the test ends. The
 * test fails if anything is still connected to it then (see dropTestDatabase).
 */
export async function createTestDatabase(t: Test, poolSize = 20): Promise<TestDatabase> {
  const { ownerUrl, owner, template } = testServer();
  const name = `t_${crypto.randomBytes(6).toString('hex')}`;
  await adminQuery(`create database ${name} template ${template} owner ${pg.escapeIdentifier(owner)}`);
  const dbUrl = databaseUrl(ownerUrl, name);
  const pool = makePool(dbUrl, poolSize);
  t.teardown(() => dropTestDatabase(name, pool));
  return { url: dbUrl, name, pool };
}
