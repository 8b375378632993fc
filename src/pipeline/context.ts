/**
 * What the tasks of one worker process share: the pool, configuration, the scanner client, connectors,
 * and the batchers that turn many concurrent jobs into few transactions.
 */
import type pg from 'pg';
import type { Config } from '../config.ts';
import { ConnectorRegistry } from '../connectors/registry.ts';
import { scanResultsFinalize, scanResultsRecordScanned, scanResultsStates, type FinalizeItem, type ScannedItem } from '../db/sql/scan-results.ts';
import { DsxaClient } from '../dsxa/client.ts';
import { QueueStatistics } from '../db/queue-stats.ts';
import type { Logger } from '../log.ts';
import crypto from 'node:crypto';
import os from 'node:os';
import { Batcher } from './batcher.ts';
import { ScannerHealth } from '../dsxa/health.ts';
import { scannerStatusReport } from '../db/sql/scanner-status.ts';
import type { SideEffectHooks } from './side-effects.ts';
import type { QueueSourceHooks } from '../monitor/queue-sources.ts';
import type { ScanHooks } from './scan.ts';

export interface PipelineContext {
  pool: pg.Pool;
  config: Config;
  log: Logger;
  dsxa: DsxaClient;
  connectors: ConnectorRegistry;
  /** Scan preflight: the state of a result row, read for many scan jobs at once. */
  resultStates: Batcher<string, string>;
  /** Scan done: marks rows scanned and enqueues finalize jobs, for many scan jobs at once. */
  scanned: Batcher<ScannedItem, string>;
  /** Finalization of many results in one transaction. */
  finalizer: Batcher<FinalizeItem, string>;
  /** Keeps the job table's planner statistics fresh while enumeration fills it. */
  queueStats: QueueStatistics;
  /** Points where tests pause or fail the pipeline on purpose (crash windows); empty in production. */
  hooks: PipelineHooks;
  /** Whether the scanner answers (a scanner outage defers scan jobs; it is never a verdict). */
  scanner: ScannerHealth;
  /** This process's id in dsx.scanner_status. */
  processId: string;
}

/** See PipelineContext.hooks. */
export interface PipelineHooks {
  sideEffects?: SideEffectHooks;
  queues?: QueueSourceHooks;
  scan?: ScanHooks;
}

/** The batchers of one lane (see PipelineContext): each lane of a worker process has its own. */
export type LaneBatchers = Pick<PipelineContext, 'resultStates' | 'scanned' | 'finalizer'>;

/**
 * New batchers for a lane. A lane with batchers of its own never waits for another lane's flushes: with
 * shared ones, a monitoring object waited for up to two running 500-item flushes of a full scan, then
 * rode in the next one.
 */
export function createLaneBatchers(pool: pg.Pool): LaneBatchers {
  return {
    resultStates: new Batcher((keys) => scanResultsStates(pool, keys), { maxSize: 500, maxDelayMs: 1 }),
    scanned: new Batcher((items) => scanResultsRecordScanned(pool, items), { maxSize: 500, maxDelayMs: 2 }),
    finalizer: new Batcher((items) => scanResultsFinalize(pool, items), { maxSize: 500, maxDelayMs: 2 }),
  };
}

/** A scan of a few bytes: the truest health check DSXA's API allows (it has no health endpoint). */
const PROBE_BODY = Buffer.from('dsx-connect scanner health probe\n');

export function createPipelineContext(args: { pool: pg.Pool; config: Config; log: Logger; dsxaUrl: string; dsxaToken?: string | null }): PipelineContext {
  const { pool, config } = args;
  const dsxa = new DsxaClient({
    url: args.dsxaUrl,
    token: args.dsxaToken ?? null,
    timeoutMs: config.dsxaTimeoutMs,
    maxInFlight: config.dsxaMaxInFlight,
  });
  const processId = `${os.hostname()}:${process.pid}:${crypto.randomBytes(3).toString('hex')}`;
  const log = args.log.child({ component: 'scanner-health' });
  const scanner = new ScannerHealth({
    probe: async () => {
      await dsxa.scanBinary(PROBE_BODY, { metadata: 'dsx-connect health probe', outsideSlots: true });
    },
    onChange: (s) =>
      s.state === 'ok'
        ? log.warn({ dsxa: dsxa.url }, 'the scanner answers again: deferred scans resume')
        : log.error({ dsxa: dsxa.url, state: s.state, err: s.error }, 'the scanner is unavailable: scans wait (their objects get no verdict until it answers)'),
    report: (status) => scannerStatusReport(pool, { processId, hostname: os.hostname(), pid: process.pid, dsxaUrl: dsxa.url, status }),
  });
  return {
    pool,
    config,
    log: args.log,
    dsxa,
    scanner,
    processId,
    connectors: new ConnectorRegistry(pool, { dataDir: config.dataDir, log: args.log }),
    ...createLaneBatchers(pool),
    queueStats: new QueueStatistics(pool, args.log),
    hooks: {},
  };
}
