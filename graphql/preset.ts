/**
 * The PostGraphile v5 preset of the API: reflection over schema `dsx` (Amber preset, exposure by
 * smart tags in sql/0007_graphql_api.sql), our plugins, websockets for subscriptions, and the caller's
 * identity turned into database settings (role, subject) for every request's transaction.
 */
import type pg from 'pg';
import { PostGraphileAmberPreset } from 'postgraphile/presets/amber';
import { makePgService, type PgSubscriber } from 'postgraphile/adaptors/pg';
import { SafeError } from 'postgraphile/grafast';
import type {} from 'postgraphile/grafserv/node';
import { AuthError, dbRole, identify, type AuthOptions } from '../src/server/auth.ts';
import { ArgumentNamesPlugin } from './plugins/argument-names.ts';
import { maskError } from './plugins/errors.ts';
import { FullScanMutationsPlugin } from './plugins/full-scan-mutations.ts';
import { makeSubscriptionsPlugin } from './plugins/subscriptions.ts';

export function makePreset(args: { pool: pg.Pool; subscriber: PgSubscriber; auth: AuthOptions }): GraphileConfig.Preset {
  return {
    extends: [PostGraphileAmberPreset],
    plugins: [ArgumentNamesPlugin, FullScanMutationsPlugin, makeSubscriptionsPlugin()],
    pgServices: [makePgService({ pool: args.pool, schemas: ['dsx'], pgSubscriber: args.subscriber })],
    grafserv: { websockets: true, maskError },
    grafast: {
      explain: false,
      async context(requestContext) {
        const header =
          requestContext.node?.req?.headers.authorization ??
          (requestContext.ws?.normalizedConnectionParams?.authorization as string | undefined);
        try {
          const who = await identify(args.auth, header);
          return { pgSettings: { role: dbRole(who.role), 'dsx.subject': who.subject } };
        } catch (err) {
          if (err instanceof AuthError) throw new SafeError(err.message, { code: 'UNAUTHENTICATED' });
          throw err;
        }
      },
    },
  };
}
