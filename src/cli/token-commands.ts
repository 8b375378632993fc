/** `dsx-connect token create|revoke|jwt`: credentials for the GraphQL API. */
import type { Command } from 'commander';
import { loadConfig } from '../config.ts';
import { API_ROLES, hashToken, newApiToken, signJwt, type ApiRole } from '../server/auth.ts';
import { action, positiveInt, UsageError, withDatabase } from './common.ts';

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
    .option('--expires-days <n>', 'days until it expires (default: never)')
    .action(
      action(async (o: { name: string; role: string; expiresDays?: string }) => {
        const r = role(o.role);
        const days = o.expiresDays ? positiveInt('--expires-days', o.expiresDays) : null;
        const secret = newApiToken();
        await withDatabase(async (db) => {
          await db.pool.query(
            `insert into dsx_private.api_tokens (name, role, token_sha256, expires_at)
             values ($1, $2, $3, now() + make_interval(days => $4::int))`,
            [o.name, r, hashToken(secret), days],
          );
        });
        process.stdout.write(`${secret}\n`);
      }),
    );
  token
    .command('revoke')
    .description('revoke an API token by name')
    .argument('<name>')
    .action(
      action(async (name: string) => {
        await withDatabase(async (db) => {
          const { rowCount } = await db.pool.query('update dsx_private.api_tokens set revoked_at = now() where name = $1 and revoked_at is null', [name]);
          if (!rowCount) throw new UsageError(`no active API token named ${JSON.stringify(name)}`);
        });
      }),
    );
  token
    .command('jwt')
    .description('print a JWT signed with DSX_JWT_SECRET')
    .requiredOption('--role <role>', 'viewer or operator')
    .option('--subject <sub>', 'who it is for (recorded as requested_by)', 'cli')
    .option('--ttl <seconds>', 'lifetime in seconds', '3600')
    .action(
      action(async (o: { role: string; subject: string; ttl: string }) => {
        const config = loadConfig();
        if (!config.jwtSecret) throw new UsageError('DSX_JWT_SECRET is not set');
        process.stdout.write(`${await signJwt(config.jwtSecret, { role: role(o.role), sub: o.subject }, positiveInt('--ttl', o.ttl))}\n`);
      }),
    );
}
