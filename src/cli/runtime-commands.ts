/** `dsx-connect migrate|worker|dsxa-emulator`: processes that run the product. */
import type { Command } from 'commander';
import { loadConfig } from '../config.ts';
import { migrateDetailed } from '../db/migrate.ts';
import { startEmulator } from '../dsxa/emulator.ts';
import { log } from '../log.ts';
import { ALL_ROLES, parseRoles, startWorker, workerPoolSize } from '../worker/run.ts';
import { action, UsageError } from './common.ts';
import { openCliDatabase } from './database.ts';
import { intInRange, LIMITS, numberInRange } from './options.ts';
import { readSecretOption } from './secrets.ts';
import { closeOnStop, untilStopSignal } from './signals.ts';

/** Registers `migrate`, `worker` and `dsxa-emulator`. */
export function registerRuntimeCommands(program: Command): void {
  program
    .command('migrate')
    .description('apply pending database migrations and changed function files (also done at every start)')
    .action(
      action(async () => {
        const config = loadConfig();
        const db = await openCliDatabase(config, { migrate: false, poolSize: 2 });
        let closing: Promise<void> | undefined;
        const close = () => (closing ??= db.close());
        const unregister = closeOnStop(close); // a migration interrupted by Ctrl-C rolls back
        try {
          const r = await migrateDetailed(db.pool);
          const lines = [
            ...(r.migrations.length ? [`applied ${r.migrations.join(', ')}`] : []),
            ...(r.functions ? ['applied the function files (sql/functions)'] : []),
          ];
          process.stdout.write(`${lines.length ? lines.join('\n') : 'database is up to date'}\n`);
        } finally {
          unregister();
          await close();
        }
      }),
    );

  program
    .command('worker')
    .description('run pipeline workers for some roles (several processes may share one database)')
    .option('--roles <roles>', `comma-separated roles: ${ALL_ROLES.join(',')}`, ALL_ROLES.join(','))
    .option('--concurrency <n>', 'jobs run at once in this process (default DSX_WORKER_CONCURRENCY)')
    .action(
      action(async (o: { roles: string; concurrency?: string }) => {
        // Listening from the start: a stop requested while starting up stops the worker once it is up.
        const stopped = untilStopSignal();
        const roles = parseRoles(o.roles);
        const config = loadConfig();
        const concurrency = o.concurrency ? intInRange('--concurrency', o.concurrency, LIMITS.workerConcurrency) : config.workerConcurrency;
        if (roles.includes('scan') && !config.dsxaUrl) {
          throw new UsageError('the scan role needs DSXA_URL (and DSXA_TOKEN if the scanner requires one); `dsx-connect dev` starts an emulator for you');
        }
        const db = await openCliDatabase(config, { poolSize: workerPoolSize(concurrency) });
        const worker = await startWorker({
          pool: db.pool,
          config,
          log,
          roles,
          concurrency,
          dsxaUrl: config.dsxaUrl ?? 'http://127.0.0.1:0',
          dsxaToken: config.dsxaToken,
        }).catch(async (err: unknown) => {
          await db.close();
          throw err;
        });
        log.info({ roles, concurrency }, 'worker running');
        const sig = await stopped;
        // Workers first (running jobs finish and are released), the database last.
        log.info({ signal: sig }, 'stopping worker');
        await worker.stop();
        await db.close();
        log.info('worker stopped');
      }),
    );

  program
    .command('dsxa-emulator')
    .description('run the DSXA emulator (same API as DSXA) for development, tests and benchmarks')
    .option('--port <n>', `port to listen on (${LIMITS.port.min}-${LIMITS.port.max}; 0 = any free port)`, '5679')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--latency-ms <n>', `added latency per scan (${LIMITS.latencyMs.min}-${LIMITS.latencyMs.max})`, '0')
    .option('--capacity <n>', `scans served at once; excess requests queue (${LIMITS.capacity.min}-${LIMITS.capacity.max})`, '64')
    .option('--fail-rate <f>', 'fraction of scans that fail (500, 503, hang, dropped connection), 0-1', '0')
    .option('--max-file-size <bytes>', 'larger files are Not Scanned (File Size Too Large)')
    .option('--token <->', 'require an AUTH_TOKEN, read from stdin ("-"; default: DSXA_TOKEN if set, else none)')
    .option('--token-file <file>', 'require the AUTH_TOKEN held in this file')
    .action(
      action(async (o: { port: string; host: string; latencyMs: string; capacity: string; failRate: string; maxFileSize?: string; token?: string; tokenFile?: string }) => {
        const stopped = untilStopSignal();
        const options = {
          port: intInRange('--port', o.port, LIMITS.port),
          host: o.host,
          latencyMs: numberInRange('--latency-ms', o.latencyMs, LIMITS.latencyMs),
          capacity: intInRange('--capacity', o.capacity, LIMITS.capacity),
          failRate: numberInRange('--fail-rate', o.failRate, LIMITS.rate),
          maxFileSize: o.maxFileSize ? intInRange('--max-file-size', o.maxFileSize, LIMITS.bytes) : undefined,
        };
        const token = await readSecretOption({ flag: '--token', value: o.token, fileFlag: '--token-file', file: o.tokenFile, envName: 'DSXA_TOKEN' });
        const emu = await startEmulator({ ...options, token: token ?? (process.env.DSXA_TOKEN || null) });
        process.stdout.write(`DSXA emulator listening on ${emu.url}\n`);
        await stopped;
        await emu.close();
      }),
    );
}
