/** `dsx-connect migrate|worker|dsxa-emulator`: processes that run the product. */
import type { Command } from 'commander';
import { loadConfig } from '../config.ts';
import { openDatabase } from '../db/connect.ts';
import { migrateDetailed } from '../db/migrate.ts';
import { startEmulator } from '../dsxa/emulator.ts';
import { log } from '../log.ts';
import { ALL_ROLES, parseRoles, startWorker, workerPoolSize } from '../worker/run.ts';
import { action, positiveInt, UsageError } from './common.ts';

/** Resolves on SIGINT/SIGTERM. */
export function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    const done = (sig: string) => resolve(sig);
    process.once('SIGINT', () => done('SIGINT'));
    process.once('SIGTERM', () => done('SIGTERM'));
  });
}

function nonNegative(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new UsageError(`${name} must be a non-negative number (got ${JSON.stringify(v)})`);
  return n;
}

export function registerRuntimeCommands(program: Command): void {
  program
    .command('migrate')
    .description('apply pending database migrations and changed function files (also done at every start)')
    .action(
      action(async () => {
        const config = loadConfig();
        const db = await openDatabase(config, { migrate: false, poolSize: 2 });
        try {
          const r = await migrateDetailed(db.pool);
          const lines = [
            ...(r.migrations.length ? [`applied ${r.migrations.join(', ')}`] : []),
            ...(r.functions ? ['applied the function files (sql/functions)'] : []),
          ];
          process.stdout.write(`${lines.length ? lines.join('\n') : 'database is up to date'}\n`);
        } finally {
          await db.close();
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
        const roles = parseRoles(o.roles);
        const config = loadConfig();
        const concurrency = o.concurrency ? positiveInt('--concurrency', o.concurrency) : config.workerConcurrency;
        if (roles.includes('scan') && !config.dsxaUrl) {
          throw new UsageError('the scan role needs DSXA_URL (and DSXA_TOKEN if the scanner requires one); `dsx-connect dev` starts an emulator for you');
        }
        const db = await openDatabase(config, { poolSize: workerPoolSize(concurrency) });
        const worker = await startWorker({
          pool: db.pool,
          config,
          log,
          roles,
          concurrency,
          dsxaUrl: config.dsxaUrl ?? 'http://127.0.0.1:0',
          dsxaToken: config.dsxaToken,
        });
        log.info({ roles, concurrency }, 'worker running');
        const sig = await untilSignal();
        log.info({ signal: sig }, 'stopping worker');
        await worker.stop();
        await db.close();
      }),
    );

  program
    .command('dsxa-emulator')
    .description('run the DSXA emulator (same API as DSXA) for development, tests and benchmarks')
    .option('--port <n>', 'port to listen on', '5679')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--latency-ms <n>', 'added latency per scan', '0')
    .option('--capacity <n>', 'scans served at once; excess requests queue', '64')
    .option('--fail-rate <f>', 'fraction of scans that fail (500, 503, hang, dropped connection)', '0')
    .option('--max-file-size <bytes>', 'larger files are Not Scanned (File Size Too Large)')
    .option('--token <token>', 'require this AUTH_TOKEN (default: DSXA_TOKEN if set, else none)')
    .action(
      action(async (o: { port: string; host: string; latencyMs: string; capacity: string; failRate: string; maxFileSize?: string; token?: string }) => {
        const failRate = nonNegative('--fail-rate', o.failRate);
        if (failRate > 1) throw new UsageError('--fail-rate must be between 0 and 1');
        const emu = await startEmulator({
          port: nonNegative('--port', o.port),
          host: o.host,
          latencyMs: nonNegative('--latency-ms', o.latencyMs),
          capacity: positiveInt('--capacity', o.capacity),
          failRate,
          maxFileSize: o.maxFileSize ? positiveInt('--max-file-size', o.maxFileSize) : undefined,
          token: o.token ?? process.env.DSXA_TOKEN ?? null,
        });
        process.stdout.write(`DSXA emulator listening on ${emu.url}\n`);
        await untilSignal();
        await emu.close();
      }),
    );
}
