/**
 * Per-test-file databases cloned from the migrated template that test/run.ts prepares, and the leak
 * check: every pool a test opens is closed by its teardown.
 */
import crypto from 'node:crypto';
import pg from 'pg';
import type { Test } from 'tap';
import { databaseUrl } from '../../src/db/embedded.ts';
import { makePool } from '../../src/db/connect.ts';

export interface TestDatabase {
  url: string;
  name: string;
  pool: pg.Pool;
}

function admin(): { url: string; template: string } {
  const url = process.env.DSX_TEST_ADMIN_URL;
  const template = process.env.DSX_TEST_TEMPLATE;
  if (!url || !template) throw new Error('run tests through `npm test` (test/run.ts prepares the database server)');
  return { url, template };
}

async function adminQuery(sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: admin().url });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

/** A fresh database with the whole schema, dropped when the test ends. */
export async function createTestDatabase(t: Test, poolSize = 20): Promise<TestDatabase> {
  const { url, template } = admin();
  const name = `t_${crypto.randomBytes(6).toString('hex')}`;
  await adminQuery(`create database ${name} template ${template}`);
  const dbUrl = databaseUrl(url, name);
  const pool = makePool(dbUrl, poolSize);
  t.teardown(async () => {
    await pool.end();
    await adminQuery(`drop database if exists ${name} with (force)`);
  });
  return { url: dbUrl, name, pool };
}
