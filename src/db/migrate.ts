/**
 * Forward-only migrations: graphile-worker's own schema first (our SQL functions enqueue jobs through
 * it), then every `sql/NNNN_*.sql` file in name order, each exactly once, each in its own transaction.
 *
 * Why these few lines instead of graphile-migrate: graphile-migrate is a development workflow (a
 * `current.sql` file, a shadow database, hash-chained committed files in its own layout); we want plain
 * numbered SQL files in `sql/` applied at start by several processes at once. A session advisory lock
 * serializes concurrent migrators; a checksum per file refuses an edited, already-applied migration.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import { runMigrations } from 'graphile-worker';
import { PROJECT_DIR } from '../config.ts';

/** Directory of the numbered migration files. */
export const SQL_DIR = path.join(PROJECT_DIR, 'sql');
/** Advisory lock key held while migrating (any constant unique to this project). */
const MIGRATION_LOCK = 7_301_993_118;

export interface MigrationFile {
  name: string;
  sql: string;
  sha256: string;
}

/** The migration files, in the order they apply. */
export function migrationFiles(dir = SQL_DIR): MigrationFile[] {
  return fs
    .readdirSync(dir)
    .filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f))
    .sort()
    .map((name) => {
      const sql = fs.readFileSync(path.join(dir, name), 'utf8');
      return { name, sql, sha256: crypto.createHash('sha256').update(sql).digest('hex') };
    });
}

/** Applies pending migrations; returns the names applied by this call. */
export async function migrate(pool: pg.Pool): Promise<string[]> {
  await runMigrations({ pgPool: pool, logger: undefined });
  const client = await pool.connect();
  const applied: string[] = [];
  try {
    await client.query('select pg_advisory_lock($1)', [MIGRATION_LOCK]);
    await client.query(`create table if not exists public.dsx_migrations (
      name text primary key, sha256 text not null, applied_at timestamptz not null default now())`);
    const done = new Map<string, string>(
      (await client.query<{ name: string; sha256: string }>('select name, sha256 from public.dsx_migrations')).rows.map(
        (r) => [r.name, r.sha256],
      ),
    );
    for (const file of migrationFiles()) {
      const previous = done.get(file.name);
      if (previous !== undefined) {
        if (previous !== file.sha256) {
          throw new Error(
            `migration ${file.name} was changed after it was applied; migrations are forward-only: add a new file instead`,
          );
        }
        continue;
      }
      await client.query('begin');
      try {
        await client.query(file.sql);
        await client.query('insert into public.dsx_migrations (name, sha256) values ($1, $2)', [file.name, file.sha256]);
        await client.query('commit');
      } catch (err) {
        await client.query('rollback');
        throw new Error(`migration ${file.name} failed: ${(err as Error).message}`, { cause: err });
      }
      applied.push(file.name);
    }
  } finally {
    await client.query('select pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => {});
    client.release();
  }
  return applied;
}
