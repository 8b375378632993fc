/** Runtime SQL for the catalog: integrations, scopes, notification channels. */
import type pg from 'pg';
import { withTransaction, type Queryable } from './queryable.ts';


/**
 * Runs `fn` in one transaction whose changes the audit trail (and a destructive policy's confirmation)
 * records as made by `actor` (dsx_private.actor(), e.g. "cli alice@laptop"), instead of the database user.
 */
export async function withActor<T>(pool: pg.Pool, actor: string, fn: (db: Queryable) => Promise<T>): Promise<T> {
  return withTransaction(pool, async (client) => {
    await client.query(`select set_config('dsx.actor', $1, true)`, [actor]);
    return fn(client);
  });
}

/** Refuses a name outside the rule of dsx.name with a message that states the rule (dsx_private.check_name). */
export async function nameCheck(db: Queryable, what: string, name: string): Promise<void> {
  await db.query('select dsx_private.check_name($1, $2)', [what, name]);
}

export interface Integration {
  id: number;
  name: string;
  kind: string;
  settings: Record<string, unknown>;
  updated_at: string;
}

export interface Scope {
  id: number;
  integration_id: number;
  integration_name: string;
  name: string;
  root: string;
  include_globs: string[];
  exclude_globs: string[];
  enabled: boolean;
  monitor: boolean;
  policy: Record<string, unknown>;
  /** Who confirmed the scope's destructive policy; null when it is not destructive (or predates confirmation). */
  destructive_confirmed_by: string | null;
  destructive_confirmed_at: Date | null;
}

const integrationColumns = 'id::float8 as id, name, kind, settings, updated_at';
const scopeColumns = `s.id::float8 as id, s.integration_id::float8 as integration_id, i.name as integration_name,
  s.name, s.root, s.include_globs, s.exclude_globs, s.enabled, s.monitor, s.policy,
  s.destructive_confirmed_by, s.destructive_confirmed_at`;

export async function integrationGet(db: Queryable, id: number): Promise<Integration | null> {
  const { rows } = await db.query(`select ${integrationColumns} from dsx.integrations where id = $1`, [id]);
  return (rows[0] as Integration | undefined) ?? null;
}

export async function integrationGetByName(db: Queryable, name: string): Promise<Integration | null> {
  const { rows } = await db.query(`select ${integrationColumns} from dsx.integrations where name = $1::text`, [name]);
  return (rows[0] as Integration | undefined) ?? null;
}

/** An integration's stored credentials (dsx_private), for building its connector; null when it has none. */
export async function integrationCredentialsGet(db: Queryable, id: number): Promise<unknown> {
  const { rows } = await db.query<{ c: unknown }>('select dsx_private.integration_credentials_get($1) as c', [id]);
  return rows[0]?.c ?? null;
}

export async function integrationList(db: Queryable): Promise<Integration[]> {
  const { rows } = await db.query(`select ${integrationColumns} from dsx.integrations order by id`);
  return rows as Integration[];
}

export async function integrationCreate(
  db: Queryable,
  args: { name: string; kind: string; settings: Record<string, unknown>; credentials?: Record<string, unknown> | null },
): Promise<Integration> {
  const { rows } = await db.query(
    `select ${integrationColumns} from dsx.create_integration($1, $2, $3::jsonb, $4::jsonb)`,
    [args.name, args.kind, JSON.stringify(args.settings), args.credentials ? JSON.stringify(args.credentials) : null],
  );
  return rows[0] as Integration;
}

/** Deletes an integration by name; false when there is none. The database refuses one with scopes or events. */
export async function integrationDelete(db: Queryable, name: string): Promise<boolean> {
  const { rowCount } = await db.query('delete from dsx.integrations where name = $1::text', [name]);
  return !!rowCount;
}

export async function scopeCreate(
  db: Queryable,
  args: {
    integrationId: number;
    name: string;
    root: string;
    include: string[];
    exclude: string[];
    policy: unknown;
    monitor: boolean;
    /** Confirms a destructive policy (delete, or a remediation of clean objects); refused without. */
    allowDestructive?: boolean;
  },
): Promise<Scope> {
  const { rows } = await db.query<{ id: string }>(
    'select id from dsx.create_scope($1, $2, $3, $4, $5, $6::jsonb, $7, $8)',
    [args.integrationId, args.name, args.root, args.include, args.exclude, JSON.stringify(args.policy ?? {}), args.monitor, !!args.allowDestructive],
  );
  return (await scopeGet(db, Number(rows[0]!.id)))!;
}

export async function scopeGet(db: Queryable, id: number): Promise<Scope | null> {
  const { rows } = await db.query(
    `select ${scopeColumns} from dsx.scopes s join dsx.integrations i on i.id = s.integration_id where s.id = $1`,
    [id],
  );
  return (rows[0] as Scope | undefined) ?? null;
}

export async function scopeGetByName(db: Queryable, name: string): Promise<Scope | null> {
  const { rows } = await db.query(
    `select ${scopeColumns} from dsx.scopes s join dsx.integrations i on i.id = s.integration_id where s.name = $1::text`,
    [name],
  );
  return (rows[0] as Scope | undefined) ?? null;
}

export async function scopeList(db: Queryable): Promise<Scope[]> {
  const { rows } = await db.query(
    `select ${scopeColumns} from dsx.scopes s join dsx.integrations i on i.id = s.integration_id order by s.id`,
  );
  return rows as Scope[];
}

/** Sets a scope's policy (validated by the database; a destructive one needs `allowDestructive`) and returns the scope. */
export async function scopeSetPolicy(db: Queryable, id: number, policy: unknown, allowDestructive = false): Promise<Scope> {
  await db.query('select dsx.set_scope_policy($1, $2::jsonb, $3)', [id, JSON.stringify(policy), allowDestructive]);
  return (await scopeGet(db, id))!;
}

/** What in a policy is destructive ("malicious: delete", "clean: move"), as the database decides it; empty when nothing is. */
export async function policyDestructive(db: Queryable, policy: unknown): Promise<string[]> {
  const { rows } = await db.query<{ d: string[] }>('select dsx_private.policy_destructive($1::jsonb) as d', [JSON.stringify(policy)]);
  return rows[0]!.d;
}

/** Enables or disables a scope (a disabled scope is neither scanned nor monitored); false when nothing changed. */
export async function scopeSetEnabled(db: Queryable, id: number, enabled: boolean): Promise<boolean> {
  const { rowCount } = await db.query('update dsx.scopes set enabled = $2 where id = $1 and enabled is distinct from $2', [id, enabled]);
  return !!rowCount;
}

/** Deletes a scope by name; false when there is none. The database refuses one with history (scans, results, events). */
export async function scopeDelete(db: Queryable, name: string): Promise<boolean> {
  const { rowCount } = await db.query('delete from dsx.scopes where name = $1::text', [name]);
  return !!rowCount;
}

export async function channelCreate(db: Queryable, args: { name: string; url: string; secret: string }): Promise<number> {
  const { rows } = await db.query<{ id: string }>('select id from dsx.create_notification_channel($1, $2, $3)', [
    args.name,
    args.url,
    args.secret,
  ]);
  return Number(rows[0]!.id);
}
