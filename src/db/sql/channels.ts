/** Runtime SQL for listing notification channels (their secrets stay in dsx_private, never read here). */
import type pg from 'pg';

type Queryable = Pick<pg.Pool, 'query'>;

/** A notification channel as operators see it: no secret. */
export interface ChannelRow {
  id: number;
  name: string;
  kind: string;
  url: string;
  enabled: boolean;
  created_at: Date;
}

/** Every channel, oldest first. */
export async function channelList(db: Queryable): Promise<ChannelRow[]> {
  const { rows } = await db.query<ChannelRow>(
    'select id::float8 as id, name, kind, url, enabled, created_at from dsx.notification_channels order by id',
  );
  return rows;
}
