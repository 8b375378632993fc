/**
 * A real API server over a test database, and clients for it: GraphQL over HTTP (fetch) and
 * subscriptions over websockets (graphql-ws), each with an optional bearer token.
 */
import fs from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import type { Test } from 'tap';
import WebSocket from 'ws';
import { createClient } from 'graphql-ws';
import { PROJECT_DIR } from '../../src/config.ts';
import { makePool } from '../../src/db/connect.ts';
import { startApiServer } from '../../src/server/http.ts';
import type { GraphQLSchema } from 'postgraphile/graphql';
import { signJwt, type ApiRole } from '../../src/server/auth.ts';

export const JWT_SECRET = 'test-secret-that-is-long-enough-for-hs256!';

export interface GraphQLResult {
  data?: any;
  errors?: { message: string; extensions?: Record<string, unknown> }[];
}

/** An example operation from graphql/operations/. */
export function operation(name: string): string {
  return fs.readFileSync(path.join(PROJECT_DIR, 'graphql', 'operations', `${name}.graphql`), 'utf8');
}

export function token(role: ApiRole, ttlSeconds = 600): Promise<string> {
  return signJwt(JWT_SECRET, { role, sub: `test-${role}` }, ttlSeconds);
}

export async function apiServer(t: Test, dbUrl: string, opts: { mode?: 'open' | 'token' } = {}) {
  const pool = makePool(dbUrl, 10);
  const server = await startApiServer({ pool, port: 0, auth: { mode: opts.mode ?? 'token', jwtSecret: JWT_SECRET, pool } });
  t.teardown(async () => {
    await server.close();
    await pool.end();
  });

  async function query(q: string, variables: Record<string, unknown> = {}, bearer?: string): Promise<GraphQLResult> {
    const res = await fetch(`${server.url}/graphql`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) },
      body: JSON.stringify({ query: q, variables }),
    });
    return (await res.json()) as GraphQLResult;
  }

  /** Subscribes; resolves with every event once the server completes the stream (or rejects on error). */
  function subscribe(q: string, variables: Record<string, unknown>, bearer?: string, onEvent?: (e: GraphQLResult) => void) {
    const client = createClient({
      url: `${server.url.replace('http', 'ws')}/graphql`,
      webSocketImpl: WebSocket,
      connectionParams: bearer ? { authorization: `Bearer ${bearer}` } : {},
      retryAttempts: 0,
    });
    const events: GraphQLResult[] = [];
    let started!: () => void;
    const done = new Promise<GraphQLResult[]>((resolve, reject) => {
      client.subscribe(
        { query: q, variables },
        {
          next: (e) => {
            events.push(e as GraphQLResult);
            onEvent?.(e as GraphQLResult);
            started?.();
          },
          error: (err) => reject(err instanceof Error ? err : new Error(JSON.stringify(err))),
          complete: () => resolve(events),
        },
      );
    }).finally(() => client.dispose());
    const firstEvent = new Promise<void>((r) => { started = r; });
    return { done, firstEvent, events };
  }

  return { url: server.url, query, subscribe };
}

/**
 * Waits until some session of this database (the API server's LISTEN connection) has subscribed to a
 * topic starting with `prefix` (pg_stat_activity shows a session's last statement): a subscription
 * is listening once its `LISTEN "<topic>"` has completed.
 */
export async function waitForListen(pool: pg.Pool, prefix: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await pool.query(
      `select 1 from pg_stat_activity where datname = current_database() and state = 'idle' and starts_with(query, $1)`,
      [`LISTEN "${prefix}`],
    );
    if (rows.length > 0) return;
    if (Date.now() > deadline) throw new Error(`no session LISTENs on ${prefix}* after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The API's GraphQL schema over a test database, as the server builds it (for the snapshot test). */
export async function graphqlSchemaOf(t: Test, dbUrl: string): Promise<GraphQLSchema> {
  const { postgraphile } = await import('postgraphile');
  const { PgSubscriber } = await import('postgraphile/adaptors/pg');
  const { makePreset } = await import('../../graphql/preset.ts');
  const pool = makePool(dbUrl, 2);
  const subscriber = new PgSubscriber(pool);
  const { DEFAULT_API_LIMITS } = await import('../../src/server/api-limits.ts');
  const pgl = postgraphile(makePreset({ pool, subscriber, auth: { mode: 'token', jwtSecret: JWT_SECRET, pool }, limits: DEFAULT_API_LIMITS }));
  t.teardown(async () => {
    subscriber.release();
    await pgl.release();
    await pool.end();
  });
  return pgl.getSchema();
}
