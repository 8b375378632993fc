/**
 * The PostGraphile v5 preset of the API: reflection over schema `dsx` (Amber preset, exposure by
 * smart tags in sql/migrations/0007_graphql_api.sql and sql/functions/), our plugins, websockets for
 * subscriptions, the request limits, and the caller's identity turned into database settings (role,
 * subject) for every request's transaction.
 */
import type http from 'node:http';
import type pg from 'pg';
import { PostGraphileAmberPreset } from 'postgraphile/presets/amber';
import { makePgService, type PgSubscriber } from 'postgraphile/adaptors/pg';
import { SafeError } from 'postgraphile/grafast';
import type {} from 'postgraphile/grafserv/node';
import type { ApiLimits } from '../src/server/api-limits.ts';
import { AuthError, dbRole, identify, type AuthOptions, type Identity } from '../src/server/auth.ts';
import { ArgumentNamesPlugin } from './plugins/argument-names.ts';
import { CreateIntegrationChecksPlugin } from './plugins/create-integration-checks.ts';
import { maskError } from './plugins/errors.ts';
import { FullScanMutationsPlugin } from './plugins/full-scan-mutations.ts';
import { makeRequestLimitsPlugin } from './plugins/request-limits.ts';
import { makeSubscriptionsPlugin } from './plugins/subscriptions.ts';
import { TimeRangeConditionsPlugin } from './plugins/time-range-conditions.ts';

export interface PresetArgs {
  pool: pg.Pool;
  subscriber: PgSubscriber;
  auth: AuthOptions;
  /** What one request may ask (body, page sizes, depth, aliases, cost). */
  limits: ApiLimits;
  /** The identity the HTTP layer already established for this request, if any (src/server/http.ts). */
  identityOf?: (req: http.IncomingMessage) => Identity | undefined;
}

export function makePreset(args: PresetArgs): GraphileConfig.Preset {
  return {
    extends: [PostGraphileAmberPreset],
    plugins: [ArgumentNamesPlugin, CreateIntegrationChecksPlugin, FullScanMutationsPlugin, makeSubscriptionsPlugin(), TimeRangeConditionsPlugin, makeRequestLimitsPlugin(args.limits)],
    pgServices: [makePgService({ pool: args.pool, schemas: ['dsx'], pgSubscriber: args.subscriber })],
    grafserv: { websockets: true, maskError, maxRequestLength: args.limits.maxBodyBytes },
    grafast: {
      explain: false,
      async context(requestContext) {
        const req = requestContext.node?.req;
        const header = req?.headers.authorization ?? (requestContext.ws?.normalizedConnectionParams?.authorization as string | undefined);
        try {
          const who = (req && args.identityOf?.(req)) || (await identify(args.auth, header));
          return { pgSettings: { role: dbRole(who.role), 'dsx.subject': who.subject } };
        } catch (err) {
          if (err instanceof AuthError) throw new SafeError(err.message, { code: 'UNAUTHENTICATED' });
          throw err;
        }
      },
    },
  };
}
