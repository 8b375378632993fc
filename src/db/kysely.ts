/**
 * Typed query builder (kysely) over the tables that read-side queries with optional filters need.
 * Writes go through the SQL functions in sql/; these types cover only what is queried here.
 */
import { Kysely, PostgresDialect, type ColumnType } from 'kysely';
import type pg from 'pg';

type Timestamp = ColumnType<Date, never, never>;
type Int8 = ColumnType<string, never, never>;

export interface ScanResultsTable {
  id: Int8;
  scope_id: Int8;
  full_scan_id: Int8 | null;
  object_identity: string;
  source_type: 'full_scan' | 'monitor' | 'manual';
  source_entity_id: string;
  state: string;
  outcome: string | null;
  reason: string | null;
  finalized_at: Timestamp | null;
}

export interface ScopesTable {
  id: Int8;
  name: string;
}

export interface DsxDatabase {
  'dsx.scan_results': ScanResultsTable;
  'dsx.scopes': ScopesTable;
}

/** A kysely instance on an existing pool. Never `destroy()` it: that would end the shared pool. */
export function kyselyOn(pool: pg.Pool): Kysely<DsxDatabase> {
  return new Kysely<DsxDatabase>({ dialect: new PostgresDialect({ pool }) });
}
