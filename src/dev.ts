/**
 * `dsx-connect dev` (what `npm start` runs): the whole product in one process tree — the embedded
 * PostgreSQL (unless DATABASE_URL is set), the DSXA emulator (unless DSXA_URL is set), every worker
 * role, and a demo integration + scope over a small generated folder so a first scan can start at once
 * (the demo scope is monitored: a file dropped into the folder is scanned within seconds).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from './config.ts';
import { openDatabase, type Database } from './db/connect.ts';
import { integrationCreate, integrationGetByName, scopeCreate, scopeGetByName } from './db/sql/catalog.ts';
import { startEmulator } from './dsxa/emulator.ts';
import type { Logger } from './log.ts';
import { generateTree } from './testing/tree.ts';
import { ALL_ROLES, startWorker, workerPoolSize, type WorkerHandle } from './worker/run.ts';

export const DEMO_NAME = 'demo';

export interface DevHandle {
  db: Database;
  dsxaUrl: string;
  worker: WorkerHandle;
  demoDir: string;
  /** Stops the workers, then the emulator, then the database (safe to call twice). */
  stop(): Promise<void>;
}

/** Creates the demo folder, integration and scope when they do not exist yet. */
export async function ensureDemo(db: Database, dataDir: string): Promise<string> {
  const demoDir = path.join(dataDir, 'demo');
  if (!fs.existsSync(demoDir)) generateTree(demoDir, { files: 200, eicar: 3, empty: 2 });
  let integration = await integrationGetByName(db.pool, DEMO_NAME);
  integration ??= await integrationCreate(db.pool, { name: DEMO_NAME, kind: 'filesystem', settings: { root: demoDir } });
  if (!(await scopeGetByName(db.pool, DEMO_NAME))) {
    await scopeCreate(db.pool, {
      integrationId: integration.id,
      name: DEMO_NAME,
      root: '',
      include: [],
      exclude: [],
      policy: { malicious: { remediation: 'none', notify: true } },
      monitor: true,
    });
  }
  return demoDir;
}

/** One started part of the dev tree and how to stop it. */
interface Part {
  name: string;
  stop(): Promise<void>;
}

/**
 * Stops parts in the reverse order of their start (workers, then the emulator they scan with, then the
 * database they all use), each even when an earlier one failed to stop; rethrows the first failure.
 */
async function stopInReverse(parts: Part[], log: Logger): Promise<void> {
  let failure: unknown;
  for (const part of [...parts].reverse()) {
    try {
      await part.stop();
    } catch (err) {
      failure ??= err;
      log.error({ part: part.name, err: err instanceof Error ? err.message : String(err) }, 'could not stop cleanly');
    }
  }
  if (failure !== undefined) throw failure;
}

/** Starts the database, the emulator (unless DSXA_URL), the demo scope and every worker role. */
export async function startDev(config: Config, log: Logger): Promise<DevHandle> {
  const db = await openDatabase(config, { poolSize: workerPoolSize(config.workerConcurrency) });
  const parts: Part[] = [{ name: 'database', stop: () => db.close() }];
  try {
    let dsxaUrl = config.dsxaUrl;
    if (!dsxaUrl) {
      const emulator = await startEmulator({ port: 0, token: config.dsxaToken ?? null });
      parts.push({ name: 'DSXA emulator', stop: () => emulator.close() });
      dsxaUrl = emulator.url;
    }
    const demoDir = await ensureDemo(db, config.dataDir);
    const worker = await startWorker({ pool: db.pool, config, log, roles: ALL_ROLES, dsxaUrl, dsxaToken: config.dsxaToken });
    parts.push({ name: 'workers', stop: () => worker.stop() });
    let stopping: Promise<void> | undefined;
    return { db, dsxaUrl, worker, demoDir, stop: () => (stopping ??= stopInReverse(parts, log)) };
  } catch (err) {
    await stopInReverse(parts, log).catch(() => {});
    throw err;
  }
}
