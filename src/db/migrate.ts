/**
 * Migrations: graphile-worker's own schema first (our SQL functions enqueue jobs through it), then our
 * two kinds of SQL files, under one advisory lock (safe with many processes starting together):
 *
 * - **Versioned migrations** (`sql/migrations/NNNN_*.sql`): tables, indexes, types, grants on tables,
 *   comments on tables and columns, data. Each is applied exactly once, in name order, in its own
 *   transaction; a checksum refuses an edited, already-applied migration (forward-only).
 * - **Repeatable function files** (`sql/functions/*.sql`): the one current definition of every
 *   function (with its attributes, grants and smart tags), its triggers, and the views. They are
 *   re-applied as a whole, in one transaction, whenever any of them changed or a migration was applied.
 *   `00_*` files (the foundation: functions that table definitions use) are applied before the
 *   versioned migrations, the others after. The rules that keep this safe are in sql/README.md.
 *
 * Why these lines instead of graphile-migrate: graphile-migrate is a development workflow (a
 * `current.sql` file, a shadow database, hash-chained committed files in its own layout); we want plain
 * SQL files applied at start by several processes at once.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import { runMigrations } from 'graphile-worker';
import { PROJECT_DIR } from '../config.ts';
import { withTransaction } from './sql/queryable.ts';

/** Directory of the SQL files. */
export const SQL_DIR = path.join(PROJECT_DIR, 'sql');
/** Directory of the versioned migrations. */
export const MIGRATIONS_DIR = path.join(SQL_DIR, 'migrations');
/** Directory of the repeatable function files. */
export const FUNCTIONS_DIR = path.join(SQL_DIR, 'functions');
/** Advisory lock key held while migrating (any constant unique to this project). */
const MIGRATION_LOCK = 7_301_993_118;

/**
 * Checksums of migrations 0001-0012 as first written, when they also held the functions (before the
 * functions moved to sql/functions on 2026-12-01). A database that applied that text has exactly the
 * tables, indexes and grants the rewritten files create, and the function files then give it exactly
 * the same functions (checked with the schema snapshot), so those checksums are accepted too.
 */
const SUPERSEDED_CHECKSUMS: Readonly<Record<string, string>> = {
  '0001_schemas_and_catalog.sql': '2ecacc088182cce550abd73c2f61d83b7852c43d1a19f8d49d111ca6a7c8a2d6',
  '0002_full_scans_and_results.sql': 'd18127095c02df5f8c07194f4079607e1f80e8e228de7e50374c24f5fd256674',
  '0003_pipeline_functions.sql': '7733493198ae4d178839d3b0e1b3a459f489bd8a50904c89fffe194e2258baca',
  '0004_finalize_and_side_effects.sql': '8bbe00deded6994a7e7bb93935aaa4fd084407aed599552802bf9a10f96cf082',
  '0005_operator_functions.sql': '18e2c0dba6e31df220ff021e75a0ece1f1bd6cd1293a71cfcd4975200bbd568f',
  '0006_worker_heartbeats_and_verify.sql': '8b58980241b19c3e17c2968e902d1b5cc6b97e74ab881d3b571fc2a918b5dea5',
  '0007_graphql_api.sql': 'af8d372a12c4a0aed33415a970d17965a080eb26c319620f0325db1a09033828',
  '0008_monitoring.sql': 'd93793b4ab6a2fc34a10113b6c248a2d014204ab57b5607502880f140a3ce7de',
  '0009_api_tokens_row_level_security.sql': '3250531d380ba9c801dc1c039ec433b2c90d83f4f2009b1b35ba5d8e860c9f48',
  '0010_finalize_without_json_round_trips.sql': '0fb8bf104ddfe1ab3735d37d5884b8cc39c49c53bcb2d505bd202500b19769d4',
  '0011_failed_scans_drain_and_credentials_check.sql': 'b0c22e6c1d9a4e09246d64ed9e7b6247e451853777d4cda86cc854c5b43f46bc',
  '0012_batched_finalize_jobs_and_short_counter_locks.sql': '6b1ce603ca76f861ed0ed1eed120d5bafc3fac4edeab5061b1834b18ef082068',
};

export interface SqlFile {
  name: string;
  sql: string;
  sha256: string;
}

function readSqlFiles(dir: string, pattern: RegExp): SqlFile[] {
  return fs
    .readdirSync(dir)
    .filter((f) => pattern.test(f))
    .sort()
    .map((name) => {
      const sql = fs.readFileSync(path.join(dir, name), 'utf8');
      return { name, sql, sha256: crypto.createHash('sha256').update(sql).digest('hex') };
    });
}

/** The versioned migrations, in the order they apply. */
export function migrationFiles(dir = MIGRATIONS_DIR): SqlFile[] {
  return readSqlFiles(dir, /^\d{4}_[a-z0-9_]+\.sql$/);
}

/** The repeatable function files, in the order they apply (`00_*` before the migrations). */
export function functionFiles(dir = FUNCTIONS_DIR): SqlFile[] {
  return readSqlFiles(dir, /^\d{2}_[a-z0-9_]+\.sql$/);
}

/** True for function files applied before the versioned migrations. */
export function isFoundation(file: SqlFile): boolean {
  return file.name.startsWith('00_');
}

/** What one call to migrate() applied. */
export interface MigrationReport {
  /** Versioned migrations applied. */
  migrations: string[];
  /** True when the function files were (re-)applied. */
  functions: boolean;
}

/**
 * Applies the function files given, in one transaction. Function bodies are not checked at creation
 * (as pg_dump does), so their order within and across files does not matter; views are.
 */
async function applyFunctionFiles(client: pg.PoolClient, files: SqlFile[]): Promise<void> {
  await withTransaction(client, async () => {
    await client.query('set local check_function_bodies = off');
    for (const file of files) {
      try {
        await client.query(file.sql);
      } catch (err) {
        throw new Error(`function file ${file.name} failed: ${(err as Error).message}`, { cause: err });
      }
    }
  });
}

/** Applies pending migrations and changed function files; returns what this call applied. */
export async function migrateDetailed(pool: pg.Pool): Promise<MigrationReport> {
  await runMigrations({ pgPool: pool, logger: undefined });
  const client = await pool.connect();
  const report: MigrationReport = { migrations: [], functions: false };
  try {
    await client.query('select pg_advisory_lock($1)', [MIGRATION_LOCK]);
    await client.query(`create table if not exists public.dsx_migrations (
      name text primary key, sha256 text not null, applied_at timestamptz not null default now())`);
    await client.query(`create table if not exists public.dsx_function_files (
      name text primary key, sha256 text not null, applied_at timestamptz not null default now())`);
    const done = new Map<string, string>(
      (await client.query<{ name: string; sha256: string }>('select name, sha256 from public.dsx_migrations')).rows.map((r) => [r.name, r.sha256]),
    );
    const pending: SqlFile[] = [];
    for (const file of migrationFiles()) {
      const previous = done.get(file.name);
      if (previous === undefined) pending.push(file);
      else if (previous !== file.sha256 && previous !== SUPERSEDED_CHECKSUMS[file.name]) {
        throw new Error(`migration ${file.name} was changed after it was applied; migrations are forward-only: add a new file instead`);
      }
    }
    const functions = functionFiles();
    const recorded = (await client.query<{ name: string; sha256: string }>('select name, sha256 from public.dsx_function_files order by name')).rows;
    const unchanged =
      recorded.length === functions.length && recorded.every((r, i) => r.name === functions[i]!.name && r.sha256 === functions[i]!.sha256);
    if (pending.length === 0 && unchanged) return report;

    await applyFunctionFiles(client, functions.filter(isFoundation));
    for (const file of pending) {
      try {
        await withTransaction(client, async () => {
          await client.query(file.sql);
          await client.query('insert into public.dsx_migrations (name, sha256) values ($1, $2)', [file.name, file.sha256]);
        });
      } catch (err) {
        throw new Error(`migration ${file.name} failed: ${(err as Error).message}`, { cause: err });
      }
      report.migrations.push(file.name);
    }
    await applyFunctionFiles(client, functions.filter((f) => !isFoundation(f)));
    await withTransaction(client, async () => {
      await client.query('delete from public.dsx_function_files');
      await client.query('insert into public.dsx_function_files (name, sha256) select * from unnest($1::text[], $2::text[])', [
        functions.map((f) => f.name),
        functions.map((f) => f.sha256),
      ]);
    });
    report.functions = true;
  } finally {
    await client.query('select pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => {});
    client.release();
  }
  return report;
}

/** Applies pending migrations and changed function files; returns the names of the migrations applied. */
export async function migrate(pool: pg.Pool): Promise<string[]> {
  return (await migrateDetailed(pool)).migrations;
}
