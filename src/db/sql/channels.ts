/** Runtime SQL for listing and deleting notification channels (their secrets stay in dsx_private, never read here). */
import type { Queryable } from './queryable.ts';


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

/** Deletes a channel by name (its secret goes with it); false when there is none. The database refuses one a policy names. */
export async function channelDelete(db: Queryable, name: string): Promise<boolean> {
  const { rowCount } = await db.query('delete from dsx.notification_channels where name = $1::text', [name]);
  return !!rowCount;
}
