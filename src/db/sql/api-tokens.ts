/** Runtime SQL for API tokens (dsx.api_tokens): only their SHA-256 is stored. Runs as the table owner. */
import type { Queryable } from './queryable.ts';


export interface ApiTokenRow {
  name: string;
  role: 'viewer' | 'operator';
  created_at: Date;
  expires_at: Date | null;
  revoked_at: Date | null;
  /** active, expired or revoked. */
  state: 'active' | 'expired' | 'revoked';
}

const STATE = `case when revoked_at is not null then 'revoked' when expires_at <= now() then 'expired' else 'active' end`;

export async function apiTokenCreate(db: Queryable, args: { name: string; role: string; sha256: string; expiresDays: number | null }): Promise<void> {
  await db.query(
    `insert into dsx.api_tokens (name, role, token_sha256, expires_at)
     values ($1, $2, $3, now() + make_interval(days => $4::int))`,
    [args.name, args.role, args.sha256, args.expiresDays],
  );
}

/** Revokes an active token; false when there is no active token of that name. */
export async function apiTokenRevoke(db: Queryable, name: string): Promise<boolean> {
  const { rowCount } = await db.query('update dsx.api_tokens set revoked_at = now() where name = $1 and revoked_at is null', [name]);
  return !!rowCount;
}

export async function apiTokenList(db: Queryable): Promise<ApiTokenRow[]> {
  const { rows } = await db.query<ApiTokenRow>(`select name, role, created_at, expires_at, revoked_at, ${STATE} as state from dsx.api_tokens order by created_at, id`);
  return rows;
}

/** The token with this hash, for authentication. */
export async function apiTokenGetByHash(db: Queryable, sha256: string): Promise<ApiTokenRow | undefined> {
  const { rows } = await db.query<ApiTokenRow>(`select name, role, created_at, expires_at, revoked_at, ${STATE} as state from dsx.api_tokens where token_sha256 = $1`, [sha256]);
  return rows[0];
}
