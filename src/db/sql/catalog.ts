/** Runtime SQL for the catalog: integrations, scopes, notification channels. */
import type pg from 'pg';

type Queryable = Pick<pg.Pool, 'query'>;

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
}

const integrationColumns = 'id::float8 as id, name, kind, settings, updated_at';
const scopeColumns = `s.id::float8 as id, s.integration_id::float8 as integration_id, i.name as integration_name,
  s.name, s.root, s.include_globs, s.exclude_globs, s.enabled, s.monitor, s.policy`;

export async function integrationGet(db: Queryable, id: number): Promise<Integration | null> {
  const { rows } = await db.query(`select ${integrationColumns} from dsx.integrations where id = $1`, [id]);
  return (rows[0] as Integration | undefined) ?? null;
}

export async function integrationGetByName(db: Queryable, name: string): Promise<Integration | null> {
  const { rows } = await db.query(`select ${integrationColumns} from dsx.integrations where name = $1`, [name]);
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

export async function scopeCreate(
  db: Queryable,
  args: { integrationId: number; name: string; root: string; include: string[]; exclude: string[]; policy: unknown; monitor: boolean },
): Promise<Scope> {
  const { rows } = await db.query<{ id: string }>(
    'select id from dsx.create_scope($1, $2, $3, $4, $5, $6::jsonb, $7)',
    [args.integrationId, args.name, args.root, args.include, args.exclude, JSON.stringify(args.policy ?? {}), args.monitor],
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
    `select ${scopeColumns} from dsx.scopes s join dsx.integrations i on i.id = s.integration_id where s.name = $1`,
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

export async function scopeSetPolicy(db: Queryable, id: number, policy: unknown): Promise<void> {
  await db.query('select dsx.set_scope_policy($1, $2::jsonb)', [id, JSON.stringify(policy)]);
}

export async function channelCreate(db: Queryable, args: { name: string; url: string; secret: string }): Promise<number> {
  const { rows } = await db.query<{ id: string }>('select id from dsx.create_notification_channel($1, $2, $3)', [
    args.name,
    args.url,
    args.secret,
  ]);
  return Number(rows[0]!.id);
}
