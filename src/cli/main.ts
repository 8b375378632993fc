/** The `dsx-connect` command. */
// First: .env must be in process.env before any module below reads it while loading (the logger does).
import './load-env.ts';
import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { loadConfig, PROJECT_DIR } from '../config.ts';
import { startDev } from '../dev.ts';
import { log } from '../log.ts';
import { registerCatalogCommands } from './catalog-commands.ts';
import { action } from './common.ts';
import { registerDatabaseCommands } from './database-commands.ts';
import { registerEffectCommands } from './effect-commands.ts';
import { explainDatabaseError } from './database.ts';
import { registerRetentionCommands } from './retention-commands.ts';
import { registerRuntimeCommands } from './runtime-commands.ts';
import { registerScanCommands } from './scan-commands.ts';
import { registerServerCommand, startApi } from './server-command.ts';
import { installStopSignals, untilStopSignal } from './signals.ts';
import { registerTokenCommands } from './token-commands.ts';

installStopSignals();

// graphile-worker can reject a background promise nobody awaits when it loses the database (returning
// its local queue while shutting down). A worker must log that and carry on (its pool is restarted),
// not die: Node's default for an unhandled rejection is to exit.
process.on('unhandledRejection', (err) => log.error({ err: err instanceof Error ? err.message : String(err) }, 'unhandled rejection'));

// `dsx-connect ... | head`: a closed stdout ends the command quietly instead of with an EPIPE stack trace.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

const { version } = JSON.parse(fs.readFileSync(path.join(PROJECT_DIR, 'package.json'), 'utf8')) as { version: string };

const program = new Command('dsx-connect')
  .description('DSX-Connect on Postgres: scan storage with DSXA through a durable job pipeline in PostgreSQL')
  .version(version, '-V, --version', 'print the version')
  .showHelpAfterError()
  .exitOverride((err) => {
    process.exit(err.exitCode === 0 ? 0 : 2);
  });

registerCatalogCommands(program);
registerScanCommands(program);
registerEffectCommands(program);
registerRuntimeCommands(program);
registerServerCommand(program);
registerTokenCommands(program);
registerDatabaseCommands(program);
registerRetentionCommands(program);

program
  .command('dev')
  .description('run everything in one process tree: database, DSXA emulator, all workers, demo scope')
  .action(
    action(async () => {
      // Listening from the start: Ctrl-C while starting up stops everything once it is up.
      const stopped = untilStopSignal();
      const config = loadConfig();
      const dev = await startDev(config, log).catch((err: unknown) => {
        throw explainDatabaseError(err, config);
      });
      // The API runs open in dev unless DSX_JWT_SECRET is set (startApi warns loudly when open).
      const api = await startApi(config, dev.db.url, { open: !config.jwtSecret }).catch(async (err) => {
        await dev.stop();
        throw err;
      });
      const where = config.databaseUrl ? 'DATABASE_URL' : `embedded PostgreSQL (data in ${config.dataDir}/pg)`;
      process.stdout.write(
        [
          '',
          'DSX-Connect is running.',
          `  database: ${where}`,
          `  DSXA:     ${dev.dsxaUrl}${config.dsxaUrl ? '' : ' (bundled emulator)'}`,
          `  workers:  all roles, concurrency ${config.workerConcurrency}`,
          `  demo:     scope "demo" over ${dev.demoDir} (monitored: files dropped there are scanned)`,
          `  GraphQL:  ${api.server.url}/graphql  (GraphiQL: ${api.server.url}/)${config.jwtSecret ? '' : '  OPEN, no token needed'}`,
          '',
          'In another terminal:',
          '  npx dsx-connect scan start demo          # prints the full-scan id',
          '  npx dsx-connect scan status <id> --wait  # progress and outcome counts',
          '  npx dsx-connect results --scope demo     # newest results first, full scan and monitoring',
          '',
          'Ctrl-C stops it (workers and API first, the database last); Ctrl-C again, a second later, exits at once.',
          '',
        ].join('\n'),
      );
      const sig = await stopped;
      log.info({ signal: sig }, 'shutting down: the API and the workers first, the database last');
      try {
        await api.close();
      } finally {
        await dev.stop();
      }
      log.info('stopped');
    }),
  );

await program.parseAsync(process.argv);
