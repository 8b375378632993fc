/**
 * Per-test-file databases cloned from the migrated template that test/run.ts prepares, and the leak
 * check: every pool a test opens is closed by its teardown. As in the product, a test database is
 * owned by, and connected to as, the owner role (not a superuser); only creating and dropping databases
 * (and what a test explicitly does as administrator) uses the superuser of DSX_TEST_ADMIN_URL.
 */
import crypto from 'node:crypto';
import pg from 'pg';
import type { Test } from 'tap';
import { databaseUrl } from '../../src/db/embedded.ts';
import { makePool } from '../../src/db/connect.ts';

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

/** A fresh database with the whole schema, owned by the owner role, dropped when the test ends. */
export async function createTestDatabase(t: Test, poolSize = 20): Promise<TestDatabase> {
  const { ownerUrl, owner, template } = testServer();
  const name = `t_${crypto.randomBytes(6).toString('hex')}`;
  await adminQuery(`create database ${name} template ${template} owner ${pg.escapeIdentifier(owner)}`);
  const dbUrl = databaseUrl(ownerUrl, name);
  const pool = makePool(dbUrl, poolSize);
  t.teardown(async () => {
    await pool.end();
    await adminQuery(`drop database if exists ${name} with (force)`);
  });
  return { url: dbUrl, name, pool };
}
