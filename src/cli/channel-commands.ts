/** `dsx-connect channel add|list|delete`: signed webhook channels. */
import type { Command } from 'commander';
import { channelCreate, withActor } from '../db/sql/catalog.ts';
import { channelDelete, channelList } from '../db/sql/channels.ts';
import { cliActor } from './cli-actor.ts';
import { action, output, UsageError, withDatabase } from './common.ts';
import { readSecretOption, safeForms, type SecretSource } from './secrets.ts';

/** SQLSTATE unique_violation. */
const UNIQUE_VIOLATION = '23505';

/** The `channel` commands. */
export function registerChannelCommands(program: Command): void {
  const channel = program.command('channel').description('manage notification channels (signed webhooks)');
  channel
    .command('add')
    .description('add a webhook channel; prints its id')
    .requiredOption('--name <name>', 'channel name')
    .requiredOption('--url <url>', 'http(s) URL receiving JSON POSTs')
    .option('--secret <->', 'read the HMAC-SHA256 key for the X-DSX-Signature header (8+ characters) from stdin: "-"')
    .option('--secret-file <file>', 'read that key from this file (default: DSX_CHANNEL_SECRET)')
    .action(
      action(async (o: { name: string; url: string; secret?: string; secretFile?: string }) => {
        const source: SecretSource = { flag: '--secret', value: o.secret, fileFlag: '--secret-file', file: o.secretFile, envName: 'DSX_CHANNEL_SECRET' };
        const secret = (await readSecretOption(source)) ?? (process.env.DSX_CHANNEL_SECRET || undefined);
        if (secret === undefined) throw new UsageError(`a channel needs a signing secret: give ${safeForms(source)}`);
        await withDatabase(async (db) => {
          // The database refuses a taken name in words; a unique violation is a concurrent add of the same name.
          const id = await withActor(db.pool, cliActor(), (q) => channelCreate(q, { name: o.name, url: o.url, secret })).catch((err: { code?: string; constraint?: string }) => {
            if (err.code === UNIQUE_VIOLATION && err.constraint) throw new UsageError(`a channel named ${JSON.stringify(o.name)} already exists (see: dsx-connect channel list)`);
            throw err;
          });
          process.stdout.write(`${id}\n`);
        });
      }),
    );
  channel
    .command('list')
    .description('list channels: name, url, enabled (never their secrets)')
    .option('--json', 'print JSON')
    .action(
      action(async (o: { json?: boolean }) => {
        const rows = await withDatabase((db) => channelList(db.pool));
        output(!!o.json, rows, () =>
          rows.length === 0
            ? `(no channels; add one with: dsx-connect channel add --name N --url URL --secret-file FILE)`
            : rows.map((c) => `${c.id}\t${c.name}\t${c.url}\t${c.enabled ? 'enabled' : 'disabled'}`).join('\n'),
        );
      }),
    );
  channel
    .command('delete')
    .description('delete a channel and its secret; refused while a scope policy names it (its deliveries stay in the ledger)')
    .argument('<name>', 'channel name')
    .action(
      action(async (name: string) => {
        await withDatabase(async (db) => {
          if (!(await withActor(db.pool, cliActor(), (q) => channelDelete(q, name)))) {
            throw new UsageError(`unknown channel ${JSON.stringify(name)} (see: dsx-connect channel list)`);
          }
          process.stdout.write(`channel ${name}: deleted\n`);
        });
      }),
    );
}
