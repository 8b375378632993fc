/** `dsx-connect token create|list|revoke|jwt`: credentials for the GraphQL API. */
import type { Command } from 'commander';
import { loadConfig } from '../config.ts';
import { API_ROLES, hashToken, newApiToken, signJwt, type ApiRole } from '../server/auth.ts';
import { apiTokenCreate, apiTokenList, apiTokenRevoke } from '../db/sql/api-tokens.ts';
import { nameCheck } from '../db/sql/catalog.ts';
import { action, output, UsageError, withDatabase } from './common.ts';
import { intInRange, LIMITS } from './options.ts';

function role(value: string): ApiRole {
  if (!(API_ROLES as readonly string[]).includes(value)) throw new UsageError(`--role must be viewer or operator (got ${JSON.stringify(value)})`);
  return value as ApiRole;
}

export function registerTokenCommands(program: Command): void {
  const token = program.command('token').description('API tokens and JWTs for the GraphQL API');
  token
    .command('create')
    .description('create an API token (printed once; only its hash is stored)')
    .requiredOption('--name <name>', 'a name to revoke it by')
    .requiredOption('--role <role>', 'viewer (read, subscribe) or operator (also start/cancel, manage the catalog)')
    .option('--expires-days <n>', `days until it expires, ${LIMITS.days.min}-${LIMITS.days.max} (default: never)`)
    .action(
      action(async (o: { name: string; role: string; expiresDays?: string }) => {
        const r = role(o.role);
        const days = o.expiresDays ? intInRange('--expires-days', o.expiresDays, LIMITS.days) : null;
        const secret = newApiToken();
        await withDatabase(async (db) => {
          await nameCheck(db.pool, 'API token', o.name);
          const taken = (await apiTokenList(db.pool)).some((t) => t.name === o.name);
          if (taken) throw new UsageError(`an API token named ${JSON.stringify(o.name)} already exists (see: dsx-connect token list)`);
          await apiTokenCreate(db.pool, { name: o.name, role: r, sha256: hashToken(secret), expiresDays: days });
        });
        process.stdout.write(`${secret}\n`);
      }),
    );
  token
    .command('list')
    .description('list API tokens: name, role, state (active, expired, revoked), dates; never the tokens')
    .option('--json', 'print JSON')
    .action(
      action(async (o: { json?: boolean }) => {
        const rows = await withDatabase((db) => apiTokenList(db.pool));
        const day = (d: Date | null) => (d ? d.toISOString().slice(0, 10) : '-');
        output(!!o.json, rows, () =>
          rows.length === 0
            ? '(no API tokens; create one with: dsx-connect token create --name N --role viewer|operator)'
            : rows.map((t) => `${t.name}\t${t.role}\t${t.state}\tcreated ${day(t.created_at)}\texpires ${day(t.expires_at)}${t.revoked_at ? `\trevoked ${day(t.revoked_at)}` : ''}`).join('\n'),
        );
      }),
    );
  token
    .command('revoke')
    .description('revoke an API token by name')
    .argument('<name>')
    .action(
      action(async (name: string) => {
        await withDatabase(async (db) => {
          if (!(await apiTokenRevoke(db.pool, name))) throw new UsageError(`no active API token named ${JSON.stringify(name)}`);
        });
      }),
    );
  token
    .command('jwt')
    .description('print a JWT signed with DSX_JWT_SECRET')
    .requiredOption('--role <role>', 'viewer or operator')
    .option('--subject <sub>', 'who it is for (recorded as requested_by)', 'cli')
    .option('--ttl <seconds>', `lifetime in seconds, ${LIMITS.ttlSeconds.min}-${LIMITS.ttlSeconds.max}`, '3600')
    .action(
      action(async (o: { role: string; subject: string; ttl: string }) => {
        const config = loadConfig();
        if (!config.jwtSecret) throw new UsageError('DSX_JWT_SECRET is not set');
        process.stdout.write(`${await signJwt(config.jwtSecret, { role: role(o.role), sub: o.subject }, intInRange('--ttl', o.ttl, LIMITS.ttlSeconds))}\n`);
      }),
    );
}
