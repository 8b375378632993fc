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

export async function startDev(config: Config, log: Logger): Promise<DevHandle> {
  const db = await openDatabase(config, { poolSize: workerPoolSize(config.workerConcurrency) });
  let emulator: Awaited<ReturnType<typeof startEmulator>> | undefined;
  let dsxaUrl = config.dsxaUrl;
  if (!dsxaUrl) {
    emulator = await startEmulator({ port: 0, token: config.dsxaToken ?? null });
    dsxaUrl = emulator.url;
  }
  const demoDir = await ensureDemo(db, config.dataDir);
  const worker = await startWorker({ pool: db.pool, config, log, roles: ALL_ROLES, dsxaUrl, dsxaToken: config.dsxaToken });
  return {
    db,
    dsxaUrl,
    worker,
    demoDir,
    async stop() {
      await worker.stop();
      await emulator?.close();
      await db.close();
    },
  };
}
