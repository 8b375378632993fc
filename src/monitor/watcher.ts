/**
 * The filesystem watcher of the `monitor` worker role: watches the root of every enabled, monitored
 * scope of a filesystem integration (chokidar: inotify on Linux, FSEvents on macOS) and feeds what it
 * sees into the same intake as HTTP events (dsx.accept_monitor_events, source 'watch'), in small
 * batches.
 *
 * - Re-arms when scopes change: the list of monitored scopes is re-read every DSX_MONITOR_SYNC_MS;
 *   watchers of scopes gone or switched off are closed, new ones opened.
 * - Survives its own errors and vanished roots: a watcher that reports an error, or whose root
 *   directory disappears, is closed and re-opened at the next sync once the root exists again.
 *   Directory renames inside a root are followed by chokidar itself (the renamed tree's files are
 *   reported as added).
 * - One watching process per database: a session advisory lock elects it, so two `monitor` workers
 *   do not report every change twice; the other waits and takes over if the first goes away.
 * - Events that cannot be recorded (database down) stay buffered and are retried with backoff.
 */
import fs from 'node:fs';
import path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type pg from 'pg';
import { relativeInside } from '../connectors/filesystem/index.ts';
import { monitorEventsAccept, watchTargets, type IncomingEvent, type WatchTarget } from '../db/sql/monitor.ts';
import type { Logger } from '../log.ts';
import { advisoryUnlock, tryAdvisoryLock } from '../db/sql/workers.ts';

/** Advisory lock key of the watcher election (any stable bigint). */
const LEADER_LOCK = 0x6473785f77617463n; // "dsx_watc"
const MAX_BUFFER = 100_000;
const FLUSH_DELAY_MS = 5;
const FLUSH_MAX = 1000;

interface Armed {
  key: string;
  target: WatchTarget;
  dir: string;
  watcher: FSWatcher;
  broken: boolean;
}

export interface WatcherHandle {
  /** Resolves once every current target is watched (for tests and `dev`). */
  ready(): Promise<void>;
  /** Re-reads the monitored scopes now. */
  sync(): Promise<void>;
  stop(): Promise<void>;
}

export function startWatcher(args: { pool: pg.Pool; log: Logger; syncMs: number }): WatcherHandle {
  const log = args.log.child({ component: 'monitor-watcher' });
  const armed = new Map<string, Armed>();
  const buffers = new Map<number, IncomingEvent[]>(); // per integration
  let flushTimer: NodeJS.Timeout | undefined;
  let flushing: Promise<void> = Promise.resolve();
  let flushBackoff = 0;
  let stopped = false;
  let leader: pg.PoolClient | undefined;
  let syncTimer: NodeJS.Timeout | undefined;
  let syncing: Promise<void> = Promise.resolve();
  const pendingReady = new Set<Promise<void>>();

  const enqueue = (integrationId: number, event: IncomingEvent) => {
    let buf = buffers.get(integrationId);
    if (!buf) buffers.set(integrationId, (buf = []));
    if (buf.length >= MAX_BUFFER) {
      log.error({ integrationId }, 'event buffer full (database unreachable?): dropping a filesystem event; run a full scan once it recovers');
      return;
    }
    buf.push(event);
    if (!flushTimer) flushTimer = setTimeout(() => void flush(), flushBackoff || FLUSH_DELAY_MS);
  };

  const flush = (): Promise<void> => {
    flushTimer = undefined;
    flushing = flushing.then(async () => {
      for (const [integrationId, buf] of buffers) {
        while (buf.length > 0) {
          const batch = buf.slice(0, FLUSH_MAX);
          try {
            await monitorEventsAccept(args.pool, integrationId, 'watch', batch);
            buf.splice(0, batch.length);
            flushBackoff = 0;
          } catch (err) {
            flushBackoff = Math.min(Math.max(flushBackoff * 2, 250), 10_000);
            log.warn({ err: (err as Error).message, integrationId, buffered: buf.length, retryInMs: flushBackoff }, 'could not record filesystem events; retrying');
            if (!stopped && !flushTimer) flushTimer = setTimeout(() => void flush(), flushBackoff);
            return;
          }
        }
      }
    });
    return flushing;
  };

  const arm = (target: WatchTarget, key: string, dir: string): Armed => {
    // The default quarantine (<DSX_DATA_DIR>/quarantine/<id>) is outside every share, and the connector
    // refuses a configured one inside the root; an old configuration that still names one is not
    // watched, so a move there can never trigger a scan of it.
    const quarantine = target.quarantine_dir ? path.resolve(target.quarantine_dir) : null;
    const watcher = watch(dir, {
      ignoreInitial: true,
      followSymlinks: false,
      ignorePermissionErrors: true,
      ignored: (p: string) => quarantine !== null && (p === quarantine || p.startsWith(quarantine + path.sep)),
    });
    const entry: Armed = { key, target, dir, watcher, broken: false };
    const report = (type: IncomingEvent['event_type']) => (abs: string, stats?: fs.Stats) => {
      // The same relative path enumeration gives the object (a name like "..x" is inside the root).
      const identity = relativeInside(target.base, abs);
      if (!identity) return;
      enqueue(target.integration_id, {
        external_id: null,
        event_type: type,
        container: null,
        object_identity: identity,
        etag: null,
        size: stats?.size ?? null,
        occurred_at: new Date().toISOString(),
      });
    };
    watcher.on('add', report('created'));
    watcher.on('change', report('modified'));
    watcher.on('unlink', report('deleted'));
    watcher.on('unlinkDir', (abs: string) => {
      if (abs === dir) {
        log.warn({ scopeId: target.scope_id, dir }, 'monitored scope root disappeared; re-arming when it is back');
        entry.broken = true;
      }
    });
    watcher.on('error', (err: unknown) => {
      log.warn({ scopeId: target.scope_id, dir, err: err instanceof Error ? err.message : String(err) }, 'watcher error; re-arming');
      entry.broken = true;
    });
    const ready = new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
    pendingReady.add(ready);
    void ready.then(() => pendingReady.delete(ready));
    log.info({ scopeId: target.scope_id, dir }, 'watching');
    return entry;
  };

  const doSync = async (): Promise<void> => {
    if (stopped) return;
    if (!leader) {
      const client = await args.pool.connect();
      if (!(await tryAdvisoryLock(client, LEADER_LOCK))) {
        client.release();
        return; // another process watches; try again at the next sync
      }
      leader = client;
      // Losing this session loses the lock: close the watchers and compete again.
      client.on('error', (err) => {
        // After stop() the session was handed back to the pool, whose end can race the server's shutdown.
        if (stopped) return;
        log.warn({ err: err.message }, 'watcher lost its database session; re-electing');
        if (leader === client) {
          leader = undefined;
          client.release(err);
          void closeAll();
        }
      });
      log.info('this process watches the monitored filesystem scopes');
    }
    const targets = await watchTargets(args.pool);
    const wanted = new Map<string, { target: WatchTarget; dir: string }>();
    for (const t of targets) {
      if (!t.base || !path.isAbsolute(t.base)) continue;
      const dir = path.join(t.base, ...t.root.split('/').filter(Boolean));
      wanted.set(`${t.scope_id}:${dir}`, { target: t, dir });
    }
    for (const [key, a] of armed) {
      if (!wanted.has(key) || a.broken) {
        armed.delete(key);
        await a.watcher.close().catch(() => {});
      }
    }
    for (const [key, { target, dir }] of wanted) {
      if (armed.has(key)) continue;
      if (!fs.existsSync(dir)) continue; // re-armed at a later sync, once the root exists
      armed.set(key, arm(target, key, dir));
    }
  };

  const closeAll = async () => {
    const all = [...armed.values()];
    armed.clear();
    await Promise.all(all.map((a) => a.watcher.close().catch(() => {})));
  };

  const sync = (): Promise<void> => {
    syncing = syncing.then(doSync).catch((err: Error) => log.warn({ err: err.message }, 'watcher sync failed; retrying'));
    return syncing;
  };
  const loop = () => {
    if (stopped) return;
    void sync().finally(() => {
      if (!stopped) syncTimer = setTimeout(loop, args.syncMs);
    });
  };
  loop();

  return {
    async ready() {
      await syncing;
      await Promise.all(pendingReady);
    },
    sync,
    async stop() {
      stopped = true;
      clearTimeout(syncTimer);
      await syncing;
      await closeAll();
      clearTimeout(flushTimer);
      await flush();
      if (leader) {
        const client = leader;
        leader = undefined;
        await advisoryUnlock(client, LEADER_LOCK).catch(() => {});
        client.release();
      }
    },
  };
}
