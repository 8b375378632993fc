/**
 * Waiting on what proves a state instead of sleeping: a condition re-checked whenever something says
 * the world may have changed (a LISTEN notification, a graphile-worker event, an emitter's event), a
 * session proven blocked by `pg_blocking_pids`, a promise or an event bounded by a timeout that names
 * what was awaited. A condition with no event to wait on is re-checked every 50 ms (`waitFor` without
 * a wake); say in the test why none exists.
 */
import type { EventEmitter } from 'node:events';
import pg from 'pg';
import type { Runner, WorkerEventMap } from 'graphile-worker';

/** Something that says "the awaited state may have changed". */
export interface Wake {
  /** Calls `onWake` on every such signal from when the returned promise resolves until the returned function is called. */
  subscribe(onWake: () => void): Promise<() => Promise<void> | void>;
}

/** Notifications on `channels`, received on a connection of its own (opened per wait, closed after it). */
export function notifications(db: pg.Pool | string, ...channels: string[]): Wake {
  return {
    async subscribe(onWake) {
      const connectionString = typeof db === 'string' ? db : (db.options as { connectionString?: string }).connectionString;
      const client = new pg.Client({ connectionString, application_name: 'dsx-test-listen' });
      client.on('error', () => {}); // a server restart under test: the wait times out, naming what it awaited
      await client.connect();
      client.on('notification', () => onWake());
      for (const c of channels) await client.query(`listen ${client.escapeIdentifier(c)}`);
      return () => client.end().catch(() => {});
    },
  };
}

/** graphile-worker events (default: every finished job) of a worker's runners, e.g. `workers(...)`'s handle. */
export function jobEvents(worker: { runners: Runner[] }, ...events: (keyof WorkerEventMap)[]): Wake {
  const names = events.length > 0 ? events : (['job:complete'] as const);
  return {
    async subscribe(onWake) {
      // Read at subscribe time: a lane restarted after a lost database has a new runner.
      const runners = worker.runners;
      for (const r of runners) for (const e of names) r.events.on(e, onWake);
      return () => {
        for (const r of runners) for (const e of names) r.events.off(e, onWake);
      };
    },
  };
}

/** Events of any emitter (a process's output stream, a server, a recorder). */
export function emitted(emitter: EventEmitter, ...events: string[]): Wake {
  return {
    async subscribe(onWake) {
      for (const e of events) emitter.on(e, onWake);
      return () => {
        for (const e of events) emitter.off(e, onWake);
      };
    },
  };
}

/**
 * Resolves once `check` returns true, re-checking on every signal of `wake` (at most one check at a time;
 * signals during a check cause one more). Without a wake it re-checks every 50 ms: only for states that
 * nothing announces. Rejects after `timeoutMs`, naming `what`; with a wake, also when the state is
 * first seen by the check at the deadline (the wake does not announce it: a slow test, not a proof).
 */
export async function waitFor(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 30_000, wake?: Wake | Wake[]): Promise<void> {
  const wakes = wake === undefined ? [] : Array.isArray(wake) ? wake : [wake];
  let signalled = false;
  let wakeUp: (() => void) | undefined;
  const onWake = () => {
    signalled = true;
    wakeUp?.();
  };
  const unsubscribe = await Promise.all(wakes.map((w) => w.subscribe(onWake)));
  const deadline = performance.now() + timeoutMs;
  try {
    for (;;) {
      signalled = false;
      const ok = await check();
      const left = deadline - performance.now();
      if (ok && (left > 0 || wakes.length === 0)) return;
      // With a wake, a state first seen at the deadline is one nothing announced: the wait is wrong.
      if (ok) throw new Error(`${what} became true, but no wake announced it within ${timeoutMs} ms`);
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      if (signalled) continue;
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        wakeUp = resolve;
        timer = setTimeout(resolve, wakes.length > 0 ? left : Math.min(50, left));
      });
      clearTimeout(timer);
      wakeUp = undefined;
    }
  } finally {
    for (const u of unsubscribe) await u();
  }
}

/** `promise`, or a rejection naming `what` after `ms` (the timer is cleared either way). */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The next `event` of `emitter` whose arguments pass `filter`, within `ms`. */
export function nextEvent<A extends unknown[]>(emitter: EventEmitter, event: string, what: string, ms = 30_000, filter: (...args: A) => boolean = () => true): Promise<A> {
  let listener!: (...args: A) => void;
  const seen = new Promise<A>((resolve) => {
    listener = (...args: A) => {
      if (!filter(...args)) return;
      emitter.off(event, listener as (...a: unknown[]) => void);
      resolve(args);
    };
    emitter.on(event, listener as (...a: unknown[]) => void);
  });
  return within(seen, ms, what).finally(() => emitter.off(event, listener as (...a: unknown[]) => void));
}

/**
 * Resolves once session `pid` waits for a lock held by another session (`pg_blocking_pids`), or, with
 * `pid` null, once any session of the pool's database waits on `blocker`. Nothing announces that a
 * session started waiting, so this re-checks every 50 ms; the state itself is the proof.
 */
export async function waitUntilBlocked(pool: pg.Pool, args: { pid?: number; blocker?: number }, what: string, timeoutMs = 10_000): Promise<void> {
  await waitFor(async () => {
    const { rows } = await pool.query<{ n: number }>(
      `select count(*)::int as n from pg_stat_activity a
        where a.datname = current_database() and ($1::int is null or a.pid = $1)
          and cardinality(pg_blocking_pids(a.pid)) > 0 and ($2::int is null or $2 = any(pg_blocking_pids(a.pid)))`,
      [args.pid ?? null, args.blocker ?? null],
    );
    return rows[0]!.n > 0;
  }, what, timeoutMs);
}
