/**
 * Scenarios 5 and 6: latencies, measured against a real API server (in this process, its own pool),
 * real workers (all roles, in this process, as the overhead scenario runs them) and the DSXA emulator
 * in its own process, answering at once.
 *
 * Clocks: client times are wall-clock milliseconds of this process (performance.timeOrigin + now());
 * database times come from the same host's clock, so differences between the two are meaningful.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createClient } from 'graphql-ws';
import pg from 'pg';
import WebSocket from 'ws';
import { PROJECT_DIR } from '../src/config.ts';
import { makePool } from '../src/db/connect.ts';
import { integrationCreate, scopeCreate } from '../src/db/sql/catalog.ts';
import { fullScanStart } from '../src/db/sql/full-scans.ts';
import { eventSecretEnsure } from '../src/db/sql/monitor.ts';
import { startApiServer, type ApiServer } from '../src/server/http.ts';
import { ALL_ROLES, startWorker, workerPoolSize, type WorkerHandle } from '../src/worker/run.ts';
import { startEmulatorProcess, type BenchServer } from './env.ts';
import { benchConfig, quiet, type BenchOptions } from './scenarios.ts';

/** Wall clock in ms with sub-millisecond resolution (comparable with PostgreSQL timestamps). */
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round1 = (v: number) => Math.round(v * 10) / 10;

/** Nearest-rank percentiles of a sample, in its unit (ms here). */
export function percentiles(xs: number[]) {
  const s = [...xs].sort((a, b) => a - b);
  const at = (p: number) => (s.length === 0 ? null : round1(s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!));
  return { n: s.length, p50: at(50), p90: at(90), p99: at(99), max: at(100), mean: s.length ? round1(s.reduce((a, b) => a + b, 0) / s.length) : null };
}

/**
 * Event-loop delay of this process (API server, workers and clients share it) while `fn` runs: how late
 * a timer fires beyond its 2 ms sampling interval.
 */
async function withLoopDelay<T>(fn: () => Promise<T>): Promise<[T, { p50: number; p99: number; max: number }]> {
  const resolution = 2;
  const h = monitorEventLoopDelay({ resolution });
  h.enable();
  try {
    const out = await fn();
    const ms = (ns: number) => round1(Math.max(0, ns / 1e6 - resolution));
    return [out, { p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), max: ms(h.max) }];
  } finally {
    h.disable();
  }
}

/**
 * Per-job timings of monitoring's own jobs (envelope source_type 'monitor': the ingest, scan and
 * finalize jobs of each event), from graphile-worker's events: queue wait = job:start - run_at (run_at
 * is now() of the transaction that enqueued it, so the wait includes the rest of that transaction and
 * its commit), run = job:start -> job:complete (its completion written back).
 */
function jobTimings(worker: WorkerHandle) {
  let phase: string | null = null;
  let phaseStart = 0;
  const started = new Map<string, number>();
  const rows: { phase: string; task: string; wait: number; run: number }[] = [];
  // Each lane's fetches (local queue refills) and how many came back empty, per phase: an empty fetch
  // still walks graphile-worker's index past every queued job of the other lanes.
  const fetches = new Map<string, Record<string, { fetches: number; empty: number }>>();
  const seconds = new Map<string, number>();
  worker.runners.forEach((runner, i) => {
    const lane = worker.lanes[i]!;
    runner.events.on('localQueue:getJobs:complete', ({ jobs }) => {
      if (!phase) return;
      const byLane = fetches.get(phase) ?? {};
      fetches.set(phase, byLane);
      const f = (byLane[lane] ??= { fetches: 0, empty: 0 });
      f.fetches++;
      if (jobs.length === 0) f.empty++;
    });
  });
  // A finalize job is a batch job (an array of envelopes): it counts when it carries a monitoring one.
  const isMonitor = (p: unknown) => (p as { source_type?: string } | null)?.source_type === 'monitor';
  for (const events of worker.runners.map((r) => r.events)) {
    events.on('job:start', ({ job }) => {
      const payload = job.payload as unknown;
      if (phase && (Array.isArray(payload) ? payload.some(isMonitor) : isMonitor(payload))) started.set(job.id, now());
    });
    events.on('job:complete', ({ job }) => {
      const s = started.get(job.id);
      if (s === undefined) return;
      started.delete(job.id);
      rows.push({ phase: phase ?? '', task: job.task_identifier, wait: s - job.run_at.getTime(), run: now() - s });
    });
  }
  return {
    setPhase(p: string | null) {
      if (phase) seconds.set(phase, (now() - phaseStart) / 1000);
      phase = p;
      phaseStart = now();
    },
    /** Per lane: fetches and empty fetches per second of the phase. */
    fetchRates(p: string) {
      const s = seconds.get(p) ?? 0;
      const rate = (n: number) => (s > 0 ? round1(n / s) : null);
      return Object.fromEntries(Object.entries(fetches.get(p) ?? {}).map(([lane, f]) => [lane, { fetches_per_s: rate(f.fetches), empty_per_s: rate(f.empty) }]));
    },
    summary(p: string) {
      const out: Record<string, { queue_wait_ms: ReturnType<typeof percentiles>; run_ms: ReturnType<typeof percentiles> }> = {};
      for (const task of [...new Set(rows.filter((r) => r.phase === p).map((r) => r.task))].sort()) {
        const xs = rows.filter((r) => r.phase === p && r.task === task);
        out[task] = { queue_wait_ms: percentiles(xs.map((x) => x.wait)), run_ms: percentiles(xs.map((x) => x.run)) };
      }
      return out;
    },
  };
}

/** Runs cleanups in reverse order of registration, each even if an earlier one failed. */
class Stack {
  #fns: (() => Promise<unknown> | unknown)[] = [];
  push(fn: () => Promise<unknown> | unknown) {
    this.#fns.push(fn);
  }
  async close() {
    for (const fn of this.#fns.reverse()) await Promise.resolve().then(fn).catch((err: Error) => console.error(`bench cleanup: ${err.message}`));
  }
}

async function startApi(url: string, stack: Stack): Promise<ApiServer> {
  const apiPool = makePool(url, 10);
  stack.push(() => apiPool.end());
  const api = await startApiServer({ pool: apiPool, port: 0, auth: { mode: 'open', jwtSecret: undefined, pool: apiPool }, log: quiet });
  stack.push(() => api.close());
  return api;
}

async function startWorkers(pool: pg.Pool, o: BenchOptions, dsxaUrl: string, stack: Stack): Promise<WorkerHandle> {
  const worker = await startWorker({ pool, config: benchConfig(o), log: quiet, roles: ALL_ROLES, dsxaUrl, pollIntervalMs: 100 });
  stack.push(() => worker.stop());
  return worker;
}

const synthetic = (i: number) => `obj-${String(i).padStart(9, '0')}`;

// ---------------------------------------------------------------------------------------------------
// Scenario 5: monitoring latency
// ---------------------------------------------------------------------------------------------------

interface EventSample {
  eventId: number;
  /** Client: request sent, 202 received, finalization seen (LISTEN on the scope's results channel + a read). */
  tPost: number;
  tAccept: number;
  tObserved: number;
}

interface EventTimes extends EventSample {
  received: number; // monitor_events.received_at: now() of the accepting transaction (before the 202)
  ingested: number; // scan_results.discovered_at: now() of the ingest job's transaction
  scanned: number; // scan_results.scanned_at: now() of the "scanned" batch transaction
  finalized: number; // scan_results.finalized_at: clock_timestamp() in the finalize statement
}

/** Figures of one phase of scenario 5. */
function eventFigures(xs: EventTimes[]) {
  const p = (f: (x: EventTimes) => number) => percentiles(xs.map(f));
  return {
    events: xs.length,
    // The definition: event accepted (202 received by the sender) -> result finalized.
    accepted_to_finalized_ms: p((x) => x.finalized - x.tAccept),
    // The same measured inside the database alone: the accepting transaction's start -> finalized.
    received_to_finalized_ms: p((x) => x.finalized - x.received),
    // What a client watching the results would see: 202 -> the NOTIFY of the result, read back.
    accepted_to_observed_ms: p((x) => x.tObserved - x.tAccept),
    intake_http_ms: p((x) => x.tAccept - x.tPost),
    stages_ms: {
      accepted_to_ingest_job: p((x) => x.ingested - x.tAccept),
      ingest_to_scanned: p((x) => x.scanned - x.ingested),
      scanned_to_finalized: p((x) => x.finalized - x.scanned),
    },
  };
}

export async function monitorLatency(server: BenchServer, o: BenchOptions) {
  const IDLE_EVENTS = 200;
  const WARMUP_EVENTS = 10;
  const LOAD_EVENTS = 100;
  // The machine's load average (1, 5, 15 min) around the run: other work on the host moves every figure.
  const loadBefore = os.loadavg().map(round1);
  const stack = new Stack();
  try {
    const emu = await startEmulatorProcess({ latencyMs: 0, capacity: 256 });
    stack.push(() => emu.stop());
    const { url, pool } = await server.database('bench_monitor', workerPoolSize(o.concurrency));
    stack.push(() => pool.end());
    const benchPool = makePool(url, 4); // the bench's own reads, apart from the workers' pool
    stack.push(() => benchPool.end());
    const objects = Math.max(o.objects, 10_000);
    const integ = await integrationCreate(pool, { name: 'synthetic', kind: 'synthetic', settings: { objects } });
    const scope = await scopeCreate(pool, { integrationId: integ.id, name: 'synthetic', root: '', include: [], exclude: [], policy: {}, monitor: true });
    const secret = await eventSecretEnsure(pool, integ.id, false, `bench-${crypto.randomUUID()}`);
    const api = await startApi(url, stack);
    const jobs = jobTimings(await startWorkers(pool, o, emu.url, stack));

    // Finalizations are seen through the scope's results channel (one NOTIFY per finalizing statement).
    const listener = new pg.Client({ connectionString: url });
    await listener.connect();
    stack.push(() => listener.end());
    await listener.query(`listen "dsx_scan_results:${scope.id}"`);
    let seq = 0;
    let wake: (() => void) | null = null;
    listener.on('notification', () => {
      seq++;
      wake?.();
    });

    const post = async (identity: string): Promise<Omit<EventSample, 'tObserved'>> => {
      const tPost = now();
      const res = await fetch(`${api.url}/events/${integ.id}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${secret}` },
        body: JSON.stringify({ objectIdentity: identity, eventType: 'modified' }),
      });
      const tAccept = now();
      const body = (await res.json()) as { eventIds?: number[]; error?: string };
      if (res.status !== 202 || body.eventIds?.length !== 1) throw new Error(`event intake answered ${res.status}: ${JSON.stringify(body)}`);
      return { eventId: body.eventIds[0]!, tPost, tAccept };
    };
    const waitFinalized = async (eventId: number): Promise<number> => {
      const deadline = now() + 60_000;
      for (;;) {
        const seen = seq;
        const { rows } = await benchPool.query(
          `select e.status, r.state from dsx.monitor_events e left join dsx.scan_results r on r.id = e.scan_result_id where e.id = $1`,
          [eventId],
        );
        const t = now();
        if (rows[0]?.state === 'finalized') return t;
        if (rows[0] && rows[0].status !== 'received' && rows[0].status !== 'scanned') throw new Error(`event ${eventId} ended ${rows[0].status}, not scanned`);
        if (t > deadline) throw new Error(`event ${eventId} not finalized after 60 s`);
        if (seq !== seen) continue;
        await new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            wake = null;
            resolve();
          }, 50);
          wake = () => {
            clearTimeout(timer);
            wake = null;
            resolve();
          };
        });
      }
    };
    const one = async (identity: string): Promise<EventSample> => {
      const s = await post(identity);
      return { ...s, tObserved: await waitFinalized(s.eventId) };
    };
    const times = async (samples: EventSample[]): Promise<EventTimes[]> => {
      const { rows } = await benchPool.query(
        `select e.id::int as id, extract(epoch from e.received_at)::float8 * 1000 as received,
                extract(epoch from r.discovered_at)::float8 * 1000 as ingested, extract(epoch from r.scanned_at)::float8 * 1000 as scanned,
                extract(epoch from r.finalized_at)::float8 * 1000 as finalized
           from dsx.monitor_events e join dsx.scan_results r on r.id = e.scan_result_id where e.id = any($1)`,
        [samples.map((s) => s.eventId)],
      );
      const byId = new Map(rows.map((r) => [r.id as number, r]));
      return samples.map((s) => ({ ...s, ...byId.get(s.eventId) }) as EventTimes);
    };

    // Idle: nothing else runs. A few warm-up events first (first queries plan, JIT, connections).
    let next = 1;
    for (let i = 0; i < WARMUP_EVENTS; i++) await one(synthetic(next++));
    jobs.setPhase('idle');
    const [idleSamples, idleLoop] = await withLoopDelay(async () => {
      const out: EventSample[] = [];
      for (let i = 0; i < IDLE_EVENTS; i++) {
        out.push(await one(synthetic(next++)));
        await sleep(20); // events arrive apart; the system settles in between
      }
      return out;
    });
    const idle = eventFigures(await times(idleSamples));

    // Under load: scenario 2's full scan of the whole scope; event k is posted once the scan has
    // finalized 5% + 90% * k/n of its objects (so the events spread over the scan), one at a time.
    next = 2001;
    const t0 = now();
    const { fullScanId } = await fullScanStart(pool, scope.id, 'bench');
    jobs.setPhase('load');
    const counter: number[] = []; // the scan's finalized counter when each event was posted
    const [loadSamples, loadLoop] = await withLoopDelay(async () => {
      const out: EventSample[] = [];
      outer: for (let k = 0; k < LOAD_EVENTS; k++) {
        const target = Math.floor(objects * (0.05 + (0.9 * k) / LOAD_EVENTS));
        for (;;) {
          const { rows } = await benchPool.query('select finalized::float8 as f, finished_at is not null as done from dsx.full_scans where id = $1', [fullScanId]);
          if (rows[0].done) break outer;
          if (rows[0].f >= target) {
            counter.push(rows[0].f);
            break;
          }
          await sleep(20);
        }
        out.push(await one(synthetic(next++)));
      }
      return out;
    });
    jobs.setPhase(null);
    for (;;) {
      const { rows } = await benchPool.query('select finished_at is not null as done from dsx.full_scans where id = $1', [fullScanId]);
      if (rows[0].done) break;
      await sleep(50);
    }
    const scanSeconds = (now() - t0) / 1000;
    const loadTimes = await times(loadSamples);
    const { rows: scanRows } = await benchPool.query(
      `select extract(epoch from finished_at)::float8 * 1000 as finished, finalized::int, status from dsx.full_scans where id = $1`,
      [fullScanId],
    );
    const finished = scanRows[0].finished as number;
    // Only events finalized while the scan was still running count as "under load".
    const during = loadTimes.filter((x) => x.finalized < finished);
    const window = during.length ? { from: Math.min(...during.map((x) => x.tPost)), to: Math.max(...during.map((x) => x.finalized)) } : null;
    const { rows: fin } = window
      ? await benchPool.query(
          `select count(*)::int as n from dsx.scan_results where full_scan_id = $1 and finalized_at between to_timestamp($2 / 1000.0) and to_timestamp($3 / 1000.0)`,
          [fullScanId, window.from, window.to],
        )
      : { rows: [{ n: 0 }] };
    const load = {
      ...eventFigures(during),
      events_posted: loadSamples.length,
      full_scan: {
        objects,
        status: scanRows[0].status,
        seconds: round1(scanSeconds),
        objects_per_s: Math.round(objects / scanSeconds),
        finalized_during_measurement: fin[0].n,
        finalized_counter_at_first_and_last_event: counter.length ? [counter[0], counter[counter.length - 1]] : null,
        measurement_seconds: window ? round1((window.to - window.from) / 1000) : 0,
      },
    };
    const idleP = idle.accepted_to_finalized_ms;
    const loadP = load.accepted_to_finalized_ms;
    return {
      definition: 'accepted = HTTP 202 received by the sender; finalized = scan_results.finalized_at (clock_timestamp() of the finalize statement)',
      load_average: { before: loadBefore, after: os.loadavg().map(round1) },
      idle: { ...idle, warmup_events: WARMUP_EVENTS, jobs: jobs.summary('idle'), lane_fetches: jobs.fetchRates('idle'), event_loop_delay_ms: idleLoop },
      under_load: { ...load, jobs: jobs.summary('load'), lane_fetches: jobs.fetchRates('load'), event_loop_delay_ms: loadLoop },
      // Issue 12: p99 <= 250 ms under a full scan at full speed (it was 500 before the monitor lane).
      targets: { idle_p50_ms: 30, idle_p99_ms: 100, under_load_p99_ms: 250 },
      holds: {
        idle_p50: idleP.p50 !== null && idleP.p50 <= 30,
        idle_p99: idleP.p99 !== null && idleP.p99 <= 100,
        under_load_p99: loadP.p99 !== null && loadP.p99 <= 250,
      },
    };
  } finally {
    await stack.close();
  }
}

// ---------------------------------------------------------------------------------------------------
// Scenario 6: progress latency
// ---------------------------------------------------------------------------------------------------

/**
 * Bench-only instrumentation of the throwaway database (not part of the product's schema): one row per
 * NOTIFY on 'dsx_full_scan:<id>', written by the transaction that sends it, so its commit time can be
 * read afterwards with pg_xact_commit_timestamp() (the bench server runs with track_commit_timestamp).
 * A progress NOTIFY is recognized by progress_notified_at changing (the product's throttle trigger sets
 * it exactly when it notifies), a status NOTIFY by the status changing. One insert per NOTIFY, i.e. at
 * most ~5 per second per scan: no measurable cost to the pipeline.
 */
const INSTRUMENT_SQL = `
  create schema bench;
  create table bench.notifies (
    id bigserial primary key,
    full_scan_id bigint not null,
    xid xid8 not null default pg_current_xact_id(),
    source text not null,
    finalized bigint,
    discovered bigint,
    status text,
    tx_start timestamptz not null default now(),
    at timestamptz not null default clock_timestamp()
  );
  create function bench.tg_notifies() returns trigger language plpgsql as $$
  begin
    if new.progress_notified_at is distinct from old.progress_notified_at then
      insert into bench.notifies (full_scan_id, source, finalized, discovered, status)
      values (new.id, case when new.finalized is distinct from old.finalized then 'finalize' else 'enumerate' end,
              new.finalized, new.discovered, new.status);
    end if;
    if new.status is distinct from old.status then
      insert into bench.notifies (full_scan_id, source, finalized, discovered, status)
      values (new.id, 'status', new.finalized, new.discovered, new.status);
    end if;
    return null;
  end $$;
  create trigger zz_bench_notifies after update on dsx.full_scans for each row execute function bench.tg_notifies();`;

interface Received {
  t: number;
  event: string;
  status: string;
  finalized: number;
  discovered: number;
}

export async function progressLatency(server: BenchServer, o: BenchOptions) {
  const stack = new Stack();
  try {
    const emu = await startEmulatorProcess({ latencyMs: 0, capacity: 256 });
    stack.push(() => emu.stop());
    const { url, pool } = await server.database('bench_progress', workerPoolSize(o.concurrency));
    stack.push(() => pool.end());
    await pool.query(INSTRUMENT_SQL);
    const commitTs = (await pool.query(`select current_setting('track_commit_timestamp') = 'on' as on`)).rows[0].on as boolean;
    const integ = await integrationCreate(pool, { name: 'synthetic', kind: 'synthetic', settings: { objects: o.objects } });
    const scope = await scopeCreate(pool, { integrationId: integ.id, name: 'synthetic', root: '', include: [], exclude: [], policy: {}, monitor: false });
    const api = await startApi(url, stack);

    // The scan is queued before any worker runs, so the subscription sees it from its first event on.
    const { fullScanId } = await fullScanStart(pool, scope.id, 'bench');
    const client = createClient({ url: `${api.url.replace(/^http/, 'ws')}/graphql`, webSocketImpl: WebSocket, retryAttempts: 0 });
    stack.push(() => client.dispose());
    const received: Received[] = [];
    let first!: () => void;
    const firstEvent = new Promise<void>((r) => (first = r));
    const query = fs.readFileSync(path.join(PROJECT_DIR, 'graphql', 'operations', 'full-scan-progress.graphql'), 'utf8');
    const done = new Promise<void>((resolve, reject) => {
      client.subscribe(
        { query, variables: { fullScanId } },
        {
          next: (e) => {
            const t = now();
            if (e.errors?.length) return reject(new Error(`subscription error: ${JSON.stringify(e.errors)}`));
            const p = (e.data as { fullScanProgress: Received }).fullScanProgress;
            received.push({ t, event: p.event, status: p.status, finalized: p.finalized, discovered: p.discovered });
            first();
          },
          error: (err) => reject(err instanceof Error ? err : new Error(JSON.stringify(err))),
          complete: () => resolve(),
        },
      );
    });
    await firstEvent;
    await sleep(300); // the server's LISTEN is issued asynchronously after the first read
    const t0 = now();
    const [, loop] = await withLoopDelay(async () => {
      await startWorkers(pool, o, emu.url, stack);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([done, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('the progress stream did not end within 15 minutes')), 900_000)))]);
      clearTimeout(timer);
    });
    const seconds = (now() - t0) / 1000;

    const { rows: notifies } = await pool.query(
      `select id::int, source, finalized::float8 as finalized, status,
              extract(epoch from ${commitTs ? 'pg_xact_commit_timestamp(xid::xid)' : 'at'})::float8 * 1000 as committed,
              extract(epoch from at)::float8 * 1000 as at, extract(epoch from tx_start)::float8 * 1000 as tx_start
         from bench.notifies where full_scan_id = $1 order by committed, id`,
      [fullScanId],
    );
    // NOTIFYs are delivered in commit order and the subscription emits one event per NOTIFY (after the
    // initial one), so the k-th event answers the k-th NOTIFY. The stream ends at the first event that
    // reads the scan finished, so a NOTIFY sent in the same transaction after that one has no event.
    const events = received.slice(1);
    const matched = Math.min(events.length, notifies.length);
    const lat: { source: string; ms: number; fromTxStart: number; fromStatement: number }[] = [];
    let orderViolations = 0;
    for (let i = 0; i < matched; i++) {
      const e = events[i]!;
      const n = notifies[i]!;
      if (e.finalized < n.finalized) orderViolations++; // an event cannot show less than its NOTIFY's commit
      lat.push({ source: n.source, ms: e.t - n.committed, fromTxStart: e.t - n.tx_start, fromStatement: e.t - n.at });
    }
    const by = (s: string) => percentiles(lat.filter((x) => x.source === s).map((x) => x.ms));
    const all = percentiles(lat.map((x) => x.ms));
    const progressGaps = notifies
      .filter((n) => n.source !== 'status')
      .map((n, i, a) => (i === 0 ? null : n.committed - a[i - 1]!.committed))
      .filter((x): x is number => x !== null);
    return {
      objects: o.objects,
      seconds: round1(seconds),
      objects_per_s: Math.round(o.objects / seconds),
      events_received: received.length,
      notifies: notifies.length,
      matched,
      order_violations: orderViolations,
      basis: commitTs
        ? 'commit time of the transaction that sent the NOTIFY (pg_xact_commit_timestamp) -> event received by the graphql-ws client'
        : 'time the NOTIFY was queued inside its transaction (clock_timestamp; track_commit_timestamp is off) -> event received',
      latency_ms: all,
      latency_ms_by_source: { finalize: by('finalize'), enumerate: by('enumerate'), status: by('status') },
      // For comparison: the same events measured from the transaction's start (what full_scans.updated_at
      // holds) and from the statement that queued the NOTIFY; both include the rest of the transaction.
      from_tx_start_ms: percentiles(lat.map((x) => x.fromTxStart)),
      from_notify_statement_ms: percentiles(lat.map((x) => x.fromStatement)),
      progress_notify_interval_ms: percentiles(progressGaps),
      event_loop_delay_ms: loop,
      target_p99_ms: 250,
      holds: all.p99 !== null && all.p99 <= 250,
    };
  } finally {
    await stack.close();
  }
}
