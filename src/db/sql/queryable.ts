/**
 * What the runtime SQL of src/db/sql runs on, and the one way to run several statements as one
 * transaction. Every module here takes a `Queryable`: a pool, a checked-out client, or (through
 * `fromQueryConfigClient`) the client PostGraphile's plans hand out, so the GraphQL plugins call the
 * same functions as the CLI and the workers instead of restating their SQL.
 */
import pg from 'pg';

/** Runs one statement: pg.Pool, pg.PoolClient and pg.Client all are. */
export interface Queryable {
  query<R extends pg.QueryResultRow = any>(text: string, values?: unknown[]): Promise<{ rows: R[]; rowCount: number | null }>;
}

/** A client whose query takes a config object ({text, values}), as PostGraphile's withPgClient gives. */
export interface QueryConfigClient {
  query<R>(q: { text: string; values?: readonly unknown[] }): Promise<{ rows: readonly R[]; rowCount?: number | null }>;
}

/** A Queryable over PostGraphile's client (the statements run in its transaction, under its role). */
export function fromQueryConfigClient(client: QueryConfigClient): Queryable {
  return {
    async query<R extends pg.QueryResultRow>(text: string, values?: unknown[]) {
      const r = await client.query<R>({ text: text, values: values ?? [] });
      return { rows: [...r.rows], rowCount: r.rowCount ?? r.rows.length };
    },
  };
}

/**
 * Runs `fn` in one transaction: commit when it returns, rollback when it throws (the error is the
 * caller's, not the rollback's). On a pool, a client is checked out for it and released afterwards
 * (destroyed when the connection failed, so a broken connection does not go back to the pool).
 */
export async function withTransaction<T>(db: pg.Pool | pg.ClientBase, fn: (client: pg.ClientBase) => Promise<T>): Promise<T> {
  const pooled = db instanceof pg.Pool ? await db.connect() : undefined;
  const client = pooled ?? (db as pg.ClientBase);
  let broken: Error | undefined;
  try {
    await client.query('begin');
    try {
      const result = await fn(client);
      await client.query('commit');
      return result;
    } catch (err) {
      await client.query('rollback').catch((e: Error) => (broken = e));
      throw err;
    }
  } finally {
    pooled?.release(broken);
  }
}
