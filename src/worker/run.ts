/**
 * Runs graphile-worker for a set of roles: each role is a subset of the tasks, so enumerate, scan,
 * finalize, remediate, notify and monitor can run in separate processes or hosts against one database.
 * Within a process the tasks are split into lanes (pipeline, effects, monitor), one graphile-worker
 * runner each, with task lists that do not overlap: one graphile-worker schema and one job table, no
 * queue of our own.
 *
 * Queue settings quote measurements on a 2-core machine: ~1,700 trivial jobs/s with defaults, ~12,000
 * with a local queue and batched completion (completeJobBatchDelay 0). Batching trades a little
 * crash-safety (more jobs may run again after a crash), which idempotency covers.
 */
import { EventEmitter } from 'node:events';
import { Logger as WorkerLogger, run, type Runner, type TaskList, type WorkerEvents } from 'graphile-worker';
import type pg from 'pg';
import os from 'node:os';
import type { Config } from '../config.ts';
import { scannerStatusForget, scannerStatusReport, scannerStatusTouch } from '../db/sql/scanner-status.ts';
import type { Logger } from '../log.ts';
import { createLaneBatchers, createPipelineContext, type PipelineContext, type PipelineHooks } from '../pipeline/context.ts';
import applyRemediation from '../../tasks/apply-remediation.ts';
import enumerateScopePage from '../../tasks/enumerate-scope-page.ts';
import finalizeScanObject from '../../tasks/finalize-scan-object.ts';
import fullScanScope from '../../tasks/full-scan-scope.ts';
import monitorEventIngest from '../../tasks/monitor-event-ingest.ts';
import retentionSweep from '../../tasks/retention-sweep.ts';
import monitorFinalizeScanObject from '../../tasks/monitor-finalize-scan-object.ts';
import monitorScanObject from '../../tasks/monitor-scan-object.ts';
import scanObject from '../../tasks/scan-object.ts';
import sendNotification from '../../tasks/send-notification.ts';
import type { TaskFactory } from './define-task.ts';
import { forceUnlockWorkers } from '../db/sql/workers.ts';
import type { WorkerTaskName } from '../jobs/envelope.ts';
import { retentionCronItems } from '../retention/schedule.ts';
import { startHeartbeat } from './heartbeat.ts';
import { startQueueSources, type QueueSourcesHandle } from '../monitor/queue-sources.ts';
import { startWatcher, type WatcherHandle } from '../monitor/watcher.ts';

/** The worker's lanes (see LANES). */
export type LaneName = 'pipeline' | 'effects' | 'monitor' | 'maintenance';

/** Task factories by task name (GraphileWorker.Tasks, src/jobs/envelope.ts). */
export type TaskFactories = { [T in WorkerTaskName]?: TaskFactory<T> };

/**
 * The tasks each role runs, per lane. A role's tasks may sit in several lanes: the scan and finalize
 * roles run full scans' jobs in the pipeline lane and monitoring's in the monitor lane (same code,
 * task names of their own), so `--roles scan` scans both.
 */
export const ROLE_TASKS: Record<string, Partial<Record<LaneName, TaskFactories>>> = {
  enumerate: { pipeline: { 'full-scan-scope': fullScanScope, 'enumerate-scope-page': enumerateScopePage } },
  scan: { pipeline: { 'scan-object': scanObject }, monitor: { 'monitor-scan-object': monitorScanObject } },
  finalize: { pipeline: { 'finalize-scan-object': finalizeScanObject }, monitor: { 'monitor-finalize-scan-object': monitorFinalizeScanObject } },
  remediate: { effects: { 'apply-remediation': applyRemediation } },
  notify: { effects: { 'send-notification': sendNotification } },
  // Storage events: ingestion of HTTP and watcher events, and (in one process per database) the
  // filesystem watcher of monitored scopes.
  monitor: { monitor: { 'monitor-event-ingest': monitorEventIngest } },
  // Housekeeping on graphile-worker's crontab: the retention sweep (DSX_RETENTION_SCHEDULE).
  maintain: { maintenance: { 'retention-sweep': retentionSweep } },
};
export const ALL_ROLES = Object.keys(ROLE_TASKS);

/** The factory of one task, whichever role and lane runs it (tests run jobs through it). */
export function taskFactory(task: WorkerTaskName): TaskFactory | undefined {
  for (const lanes of Object.values(ROLE_TASKS)) {
    for (const tasks of Object.values(lanes)) {
      const factory = tasks[task];
      if (factory) return factory as TaskFactory;
    }
  }
  return undefined;
}

/** Parses `--roles a,b`; throws naming an unknown role. */
export function parseRoles(spec: string): string[] {
  const roles = spec.split(',').map((r) => r.trim()).filter(Boolean);
  if (roles.length === 0) throw new Error(`--roles needs at least one of ${ALL_ROLES.join(', ')}`);
  for (const r of roles) {
    if (!ROLE_TASKS[r]) throw new Error(`unknown worker role ${JSON.stringify(r)} (expected some of ${ALL_ROLES.join(', ')})`);
  }
  return [...new Set(roles)];
}

/** How one lane's runner fetches its jobs. */
export interface Lane {
  /** Jobs of the lane run at once per process. */
  concurrency: (config: Config, pipelineConcurrency: number) => number;
  preset: (concurrency: number, pollIntervalMs?: number) => GraphileConfig.Preset;
  /** Whether the lane flushes its own batches (scan preflight, scanned mark, finalization). */
  ownBatchers: boolean;
}

/**
 * Lanes: each lane is its own graphile-worker runner in the process, with its own concurrency and task
 * list, so the jobs of one lane never occupy the slots of another nor wait behind jobs another lane's
 * runner has already fetched.
 * - pipeline: full scans (enumeration, scans, finalization). Throughput first: a local queue as large
 *   as the concurrency, refilled in batches.
 * - effects: remediation and notification. Side effects wait on receivers and storage (a webhook may
 *   take its whole 10 s timeout): with one runner, a burst of detections aimed at a slow receiver filled
 *   every slot with waiting notifications and scanning and finalization stopped.
 * - monitor: storage events and the scans and finalizations of their objects. Priorities only order the
 *   fetch, not what a runner already holds: in the pipeline lane a monitoring job waited behind up to
 *   128 prefetched full-scan jobs (event -> result p99 1,589 ms under a 100,000-object full scan on 2
 *   cores; 131 ms with this lane, the scan's rate unchanged). Its own runner, task names and batchers
 *   keep it apart; see latencyPreset for its fetch.
 */
export const LANES: Record<LaneName, Lane> = {
  pipeline: { concurrency: (_c, n) => n, preset: workerPreset, ownBatchers: false },
  effects: { concurrency: (c) => c.effectsConcurrency, preset: latencyPreset, ownBatchers: false },
  monitor: { concurrency: (c) => c.monitorConcurrency, preset: latencyPreset, ownBatchers: true },
  // One sweep at a time is all there is to run (sweeps also exclude each other by an advisory lock);
  // in its own runner it never takes a slot of the pipeline or the side effects for its minutes.
  maintenance: { concurrency: () => 1, preset: workerPreset, ownBatchers: false },
};

export interface WorkerHandle {
  /** The graphile-worker runner of the first lane of the moment (replaced after a database outage). */
  readonly runner: Runner;
  /** The runners of every lane of the moment, in the order of `lanes`. */
  readonly runners: Runner[];
  /** The lanes this process runs: those holding a task of one of its roles. */
  readonly lanes: LaneName[];
  context: PipelineContext;
  /** The filesystem watcher, when this process has the monitor role. */
  watcher: WatcherHandle | null;
  /** The pollers of event queues (SQS, Azure Storage Queue), when this process has the monitor role. */
  queues: QueueSourcesHandle | null;
  stop(): Promise<void>;
}

/**
 * graphile-worker 0.18.0 (and its main branch) cannot release a local queue that holds fetched jobs while
 * every worker is busy (mode WAITING), the normal state when a worker stops during a scan: it starts
 * the query returning those jobs, then throws this, and each later step of the shutdown reports the same
 * error again (five error lines per stop). The jobs are returned all the same, and `stop()` below unlocks
 * whatever this process still holds, so these reports are logged at debug level.
 */
const LOCAL_QUEUE_RELEASE_BUG = 'Cannot background something when the queue is already released';

function isLocalQueueReleaseBug(err: unknown): boolean {
  if (err instanceof AggregateError) return err.errors.length > 0 && err.errors.every(isLocalQueueReleaseBug);
  return err instanceof Error && err.message.includes(LOCAL_QUEUE_RELEASE_BUG);
}

/** graphile-worker logs routed to pino (its per-job INFO lines become debug). */
export function workerLogger(log: Logger): WorkerLogger {
  return new WorkerLogger((scope) => (level, message, meta) => {
    const l = log.child({ component: 'graphile-worker', ...(scope.taskIdentifier ? { task: scope.taskIdentifier } : {}) });
    // Pools are deliberately smaller than concurrency: jobs come from the local queue and our SQL runs
    // in batches, so a connection per running job would only cost server memory.
    const expected = /maxPoolSize .* smaller than concurrency/.test(message) || isLocalQueueReleaseBug((meta as { error?: unknown } | undefined)?.error);
    const lvl = level === 'error' && !expected ? 'error' : level === 'warning' && !expected ? 'warn' : 'debug';
    l[lvl](meta ?? {}, message);
  });
}

/**
 * Connections a worker process needs: graphile-worker's own, a few per batcher, and the side-effect
 * lane's short claims and records; not one per job.
 */
export function workerPoolSize(concurrency: number): number {
  // 6 of them for the monitor lane's own batchers (three, each up to two flushes at once).
  return Math.min(concurrency, 32) + 18;
}

/**
 * graphile-worker settings of the pipeline lane (the benchmark's queue ceiling uses them too): a local
 * queue as large as the concurrency, and after an empty fetch a 5-15 ms pause during which "new job"
 * notifications are only counted (refetchDelay), so that a busy queue is not asked once per insert.
 */
export function workerPreset(concurrency: number, pollIntervalMs = 1000): GraphileConfig.Preset {
  return {
    worker: {
      concurrentJobs: concurrency,
      pollInterval: pollIntervalMs,
      localQueue: { size: concurrency, refetchDelay: { durationMs: 10 } },
      completeJobBatchDelay: 0,
      failJobBatchDelay: 0,
    },
  };
}

/**
 * graphile-worker settings of the lanes where a job's wait matters more than the fetch rate (effects,
 * monitor): a local queue no larger than the lane runs at once, and no refetch delay. With the
 * pipeline's refetch delay, a job inserted within 5-15 ms of an empty fetch (a remediation, right after
 * the scan's "scanned" insert had woken the lane) was noticed only at the next poll, up to
 * pollInterval (1 s) later. Fetches stay one at a time per lane; notifications arriving during one are
 * folded into a single fetch after it.
 */
export function latencyPreset(concurrency: number, pollIntervalMs = 1000): GraphileConfig.Preset {
  return {
    worker: {
      concurrentJobs: concurrency,
      pollInterval: pollIntervalMs,
      localQueue: { size: concurrency },
      completeJobBatchDelay: 0,
      failJobBatchDelay: 0,
    },
  };
}

export async function startWorker(args: {
  pool: pg.Pool;
  config: Config;
  log: Logger;
  roles: string[];
  concurrency?: number;
  dsxaUrl: string;
  dsxaToken?: string | null;
  pollIntervalMs?: number;
  /** Test hooks (crash windows); none in production. */
  hooks?: PipelineHooks;
}): Promise<WorkerHandle> {
  const concurrency = args.concurrency ?? args.config.workerConcurrency;
  const context = createPipelineContext(args);
  if (args.hooks) context.hooks = args.hooks;
  let stopping = false;
  const lanes = (Object.entries(LANES) as [LaneName, Lane][])
    .map(([name, lane]) => {
      // Everything else (connectors and their limits, the scanner client and its health) is the process's.
      const laneContext = lane.ownBatchers ? { ...context, ...createLaneBatchers(args.pool) } : context;
      const taskList: TaskList = {};
      for (const role of args.roles) {
        for (const [task, factory] of Object.entries(ROLE_TASKS[role]?.[name] ?? {})) taskList[task] = factory(laneContext);
      }
      const laneConcurrency = lane.concurrency(args.config, concurrency);
      return { name, taskList, preset: lane.preset(laneConcurrency, args.pollIntervalMs), current: undefined as Generation | undefined };
    })
    .filter((l) => Object.keys(l.taskList).length > 0);

  interface Generation {
    runner: Runner;
    poolIds: string[];
    heartbeats: { stop(): Promise<void> }[];
  }

  // graphile-worker shuts its pool down when it loses the database (by design: "should trigger
  // shutdown"). We restart it in place once the database answers again, with backoff, and release
  // the jobs the dead pool held at once (we know it is dead), so a PostgreSQL restart costs seconds.
  const launch = async (lane: (typeof lanes)[number]): Promise<void> => {
    const events: WorkerEvents = new EventEmitter();
    const generation: Generation = { runner: undefined as unknown as Runner, poolIds: [], heartbeats: [] };
    // The pool id is what graphile-worker writes into locked_by (jobs come from the local queue).
    events.on('pool:create', ({ workerPool }) => {
      generation.poolIds.push(workerPool.id);
      generation.heartbeats.push(
        startHeartbeat(args.pool, workerPool.id, args.roles, { intervalMs: args.config.heartbeatMs, deadAfterMs: args.config.deadWorkerAfterMs }, args.log),
      );
    });
    generation.runner = await run({
      pgPool: args.pool,
      taskList: lane.taskList,
      events,
      noHandleSignals: true,
      logger: workerLogger(args.log.child({ lane: lane.name })),
      preset: lane.preset,
      // Scheduled tasks run in the lane that has them; the other lanes schedule nothing.
      ...(lane.taskList['retention-sweep'] && { parsedCronItems: retentionCronItems(args.config.retention) }),
    });
    lane.current = generation;
    // The pool ends when it shuts down, or is crippled when one of its workers cannot release a job
    // ("committing seppuku"): either way, unless we asked for it, replace it with a new pool.
    let over = false;
    const ended = async (err?: unknown) => {
      if (over) return;
      over = true;
      void generation.runner.kill('database connection lost').catch(() => {});
      await Promise.all(generation.heartbeats.map((h) => h.stop()));
      if (stopping) return;
      args.log.error({ lane: lane.name, err: err instanceof Error ? err.message : err }, 'worker pool stopped (database unreachable?); restarting it when the database answers');
      await relaunch(lane, generation.poolIds);
    };
    generation.runner.promise.then(() => ended(), ended);
    events.on('pool:fatalError', ({ error }) => void ended(error));
    events.on('worker:fatalError', ({ error }) => void ended(error));
  };
  const relaunch = async (lane: (typeof lanes)[number], deadPoolIds: string[]): Promise<void> => {
    for (let delay = 250; !stopping; delay = Math.min(delay * 2, 10_000)) {
      try {
        await forceUnlockWorkers(args.pool, deadPoolIds);
        await launch(lane);
        args.log.warn({ lane: lane.name }, 'worker pool restarted');
        return;
      } catch {
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  };
  // Each lane's runner keeps one connection for LISTEN; a pool with no room beyond those never runs a job.
  const poolMax = (args.pool as pg.Pool & { options: { max?: number } }).options.max ?? 10;
  if (poolMax < lanes.length + 2) {
    args.log.warn({ poolMax, lanes: lanes.length }, `the database pool (${poolMax} connections) is too small for ${lanes.length} lanes: jobs may never run; size it with workerPoolSize()`);
  }
  for (const lane of lanes) await launch(lane);
  // A worker started with an unreachable or unauthorized DSXA_URL says so at start (and its scans wait).
  let scannerTimer: NodeJS.Timeout | undefined;
  if (args.roles.includes('scan')) {
    const s = await context.scanner.check();
    if (s.state === 'ok') args.log.info({ dsxa: context.dsxa.url }, 'the scanner answers');
    else args.log.error({ dsxa: context.dsxa.url, state: s.state, err: s.error }, `DSXA at ${context.dsxa.url} is ${s.state}: scans wait until it answers (${s.error})`);
    await scannerStatusReport(args.pool, { processId: context.processId, hostname: os.hostname(), pid: process.pid, dsxaUrl: context.dsxa.url, status: s }).catch(() => {});
    scannerTimer = setInterval(() => {
      void scannerStatusTouch(args.pool, context.processId, args.config.deadWorkerAfterMs).catch(() => {});
    }, args.config.heartbeatMs);
    scannerTimer.unref();
  }
  const monitor = args.roles.includes('monitor');
  const watcher = monitor ? startWatcher({ pool: args.pool, log: args.log, syncMs: args.config.monitorSyncMs }) : null;
  const queues = monitor ? startQueueSources({ pool: args.pool, log: args.log, syncMs: args.config.monitorSyncMs, hooks: context.hooks.queues }) : null;
  return {
    get runner() {
      return lanes[0]!.current!.runner;
    },
    get runners() {
      return lanes.map((l) => l.current!.runner);
    },
    lanes: lanes.map((l) => l.name),
    context,
    watcher,
    queues,
    async stop() {
      stopping = true;
      await Promise.all([watcher?.stop(), queues?.stop()]);
      await Promise.all(lanes.map((l) => l.current!.runner.stop().catch(() => {})));
      // Nothing of ours runs any more: a job still locked by our pools is one the local queue failed to
      // return (see LOCAL_QUEUE_RELEASE_BUG); hand it back now rather than after the dead-worker sweep.
      await forceUnlockWorkers(args.pool, lanes.flatMap((l) => l.current!.poolIds)).catch((err: Error) => {
        args.log.warn({ err: err.message }, 'could not release the jobs this worker held; the dead-worker sweep will');
      });
      await Promise.all(lanes.flatMap((l) => l.current!.heartbeats.map((h) => h.stop())));
      await context.connectors.close();
      clearInterval(scannerTimer);
      await context.scanner.stop();
      if (scannerTimer) await scannerStatusForget(args.pool, context.processId).catch(() => {});
    },
  };
}
