/**
 * The leak tracker behind the leak check (test/helpers/leak-check.ts, loaded before every test file by
 * test/run.ts). It records, as they are opened, every PostgreSQL pool and standalone client, every
 * listening TCP/HTTP server and every child process of the test process, with where each was opened
 * and which top-level test was running. After each top-level test, whatever that test opened and did
 * not close is described ("pool to t_ab12 (opened at test/x.test.ts:12) was never ended: 2 clients"),
 * closed, and the test fails naming it; what a file opened outside its tests is checked when the file
 * ends.
 *
 * Glossary: an *entry* is one tracked resource; its *owner* is the top-level test that was running
 * when it was opened (null: the file itself, e.g. a server started in `t.before`).
 */
import { ChildProcess } from 'node:child_process';
import http from 'node:http';
import https from 'node:https';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { descendants, isRunning } from './proc.ts';

const PROJECT_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** How long something already asked to close (a child sent SIGKILL, a pool ending) may take to go. */
const CLOSING_GRACE_MS = 5_000;

/** A tracked resource. */
interface Entry {
  /** The pool, client, server or child process itself. */
  resource: object;
  owner: object | null;
  /** Where it was opened: the test file's line (or a helper's) that led to it. */
  at: string;
  /** The database a pool or client connects to. */
  database?: string;
  /** Waits (up to CLOSING_GRACE_MS) for a close already under way, then says what is still open, or null. */
  check(): Promise<string | null>;
  /** Closes it by force (after it was reported). */
  close(): Promise<void>;
  /** Backend pids of its PostgreSQL connections, to name a session in pg_stat_activity. */
  backendPids?(): number[];
}

const entries = new Set<Entry>();
let current: object | null = null;
let pending: string[] = [];

/** Resolves when `p` settles or after `ms`, whichever is first; true when `p` settled. */
async function settledWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([p.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The most telling frame of the current stack: a test file's line, else a helper's, else the first of ours. */
function openedAt(): string {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 40;
  const stack = new Error().stack ?? '';
  Error.stackTraceLimit = limit;
  const frames = stack
    .split('\n')
    .slice(1)
    .map((l) => /\(?((?:file:\/\/)?\/[^()\s]+):(\d+):\d+\)?\s*$/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ file: m[1]!.startsWith('file://') ? fileURLToPath(m[1]!) : m[1]!, line: m[2]! }))
    .filter((f) => f.file.startsWith(PROJECT_DIR) && !f.file.includes('/node_modules/') && !f.file.endsWith('/test/helpers/leaks.ts'));
  const pick = frames.find((f) => f.file.endsWith('.test.ts')) ?? frames.find((f) => f.file.includes('/test/')) ?? frames[0];
  return pick ? `${path.relative(PROJECT_DIR, pick.file)}:${pick.line}` : 'unknown place';
}

function track(entry: Omit<Entry, 'owner' | 'at'>): Entry {
  const e: Entry = { ...entry, owner: current, at: openedAt() };
  entries.add(e);
  return e;
}

function databaseOf(config: unknown): string {
  const c = (typeof config === 'string' ? { connectionString: config } : (config ?? {})) as { database?: string; connectionString?: string };
  if (c.database) return c.database;
  try {
    return c.connectionString ? decodeURIComponent(new URL(c.connectionString).pathname.slice(1)) || '(default database)' : '(default database)';
  } catch {
    return '(unparsable connection string)';
  }
}

const LAST_QUERY = Symbol('dsx last query');

/** What a pg client last sent, shortened ("LISTEN \"jobs:insert\"" names a graphile-worker runner). */
function lastQuery(client: object): string | undefined {
  return (client as { [LAST_QUERY]?: string })[LAST_QUERY];
}

interface PgClientInternals {
  _connecting: boolean;
  _connected: boolean;
  _ending: boolean;
  _ended: boolean;
  processID?: number;
  connection?: { stream?: net.Socket };
}

interface PgPoolInternals {
  _clients: (pg.PoolClient & PgClientInternals)[];
  _idle: { client: object }[];
  ending: boolean;
  ended: boolean;
  options: { connectionString?: string; database?: string };
}

/** The last queries of a pool's checked-out clients (what still holds them), at most 3 distinct ones. */
export function checkedOutQueries(pool: pg.Pool): string[] {
  const p = pool as unknown as PgPoolInternals;
  const idle = new Set(p._idle.map((i) => i.client));
  return [...new Set(p._clients.filter((c) => !idle.has(c)).map((c) => lastQuery(c) ?? '(none yet)'))].slice(0, 3);
}

function installPg(): void {
  const require = createRequire(import.meta.url);
  const pgModule = require('pg') as typeof pg;
  const OriginalPool = pgModule.Pool;
  const OriginalClient = pgModule.Client;

  // Every client, pooled or not, remembers its last query: it names what holds a leaked connection.
  const query = OriginalClient.prototype.query as (...args: unknown[]) => unknown;
  OriginalClient.prototype.query = function (this: object, ...args: unknown[]) {
    const config = args[0] as string | { text?: string } | undefined;
    const text = typeof config === 'string' ? config : config?.text;
    if (text) (this as { [LAST_QUERY]?: string })[LAST_QUERY] = text.replace(/\s+/g, ' ').trim().slice(0, 80);
    return query.apply(this, args);
  } as typeof OriginalClient.prototype.query;

  /** A pg.Pool that registers itself with the leak tracker. */
  class TrackedPool extends OriginalPool {
    #ending: Promise<void> | undefined;
    constructor(...args: ConstructorParameters<typeof OriginalPool>) {
      super(...args);
      const pool = this as unknown as PgPoolInternals & pg.Pool;
      const database = databaseOf(args[0]);
      const entry = track({
        resource: this,
        database,
        check: async () => {
          if (pool.ending && this.#ending && pool.totalCount > 0) await settledWithin(this.#ending, CLOSING_GRACE_MS);
          if (pool.ended || (pool.ending && pool.totalCount === 0)) {
            entries.delete(entry);
            return null;
          }
          const busy = pool.totalCount - pool.idleCount;
          const queries = checkedOutQueries(pool);
          const state = pool.ending ? 'is still ending' : 'was never ended';
          return `pool to ${database} (opened at ${entry.at}) ${state}: ${pool.totalCount} client(s), ${busy} checked out${queries.length ? ` (last queries: ${queries.join(' | ')})` : ''}`;
        },
        close: async () => {
          if (!pool.ending) this.#ending = super.end();
          if (!(await settledWithin(this.#ending ?? Promise.resolve(), 2_000))) {
            for (const c of pool._clients) c.connection?.stream?.destroy();
          }
          entries.delete(entry);
        },
        backendPids: () => pool._clients.map((c) => c.processID).filter((p): p is number => typeof p === 'number'),
      });
    }

    override end(): Promise<void>;
    override end(callback: () => void): void;
    override end(callback?: () => void): Promise<void> | void {
      if (callback) return super.end(callback);
      this.#ending = super.end();
      return this.#ending;
    }
  }

  /** A standalone pg.Client that registers itself with the leak tracker. */
  class TrackedClient extends OriginalClient {
    constructor(...args: ConstructorParameters<typeof OriginalClient>) {
      super(...args);
      const client = this as unknown as PgClientInternals;
      const database = databaseOf(args[0]);
      let ended!: () => void;
      const end = new Promise<void>((resolve) => (ended = resolve));
      this.once('end', () => {
        entries.delete(entry);
        ended();
      });
      const entry = track({
        resource: this,
        database,
        check: async () => {
          if (client._ending) await settledWithin(end, CLOSING_GRACE_MS);
          if (client._ended || !(client._connected || client._connecting)) {
            entries.delete(entry);
            return null;
          }
          const q = lastQuery(this);
          return `client to ${database} (opened at ${entry.at}) still connected${client.processID ? ` (backend pid ${client.processID})` : ''}${q ? `; last query: ${q}` : ''}`;
        },
        close: async () => {
          if (!(await settledWithin(this.end(), 2_000))) client.connection?.stream?.destroy();
          entries.delete(entry);
        },
        backendPids: () => (client.processID ? [client.processID] : []),
      });
    }
  }

  // `pg`'s ESM entry reads these properties when it is first imported; this module is loaded before any
  // test file, so `import pg from 'pg'` and `import { Pool } from 'pg'` both get the tracked classes.
  pgModule.Pool = TrackedPool as typeof pgModule.Pool;
  pgModule.Client = TrackedClient as typeof pgModule.Client;
}

function serverKind(server: net.Server): string {
  if (server instanceof https.Server) return 'HTTPS server';
  if (server instanceof http.Server) return 'HTTP server';
  return 'TCP server';
}

function installServers(): void {
  const seen = new WeakSet<net.Server>();
  const listen = net.Server.prototype.listen as (...args: unknown[]) => net.Server;
  net.Server.prototype.listen = function (this: net.Server, ...args: unknown[]) {
    if (!seen.has(this)) {
      seen.add(this);
      const server = this;
      const entry = track({
        resource: server,
        check: async () => {
          if (!server.listening) {
            entries.delete(entry);
            return null;
          }
          const a = server.address();
          const where = typeof a === 'string' ? a : a ? `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}` : '?';
          return `${serverKind(server)} listening on ${where} (opened at ${entry.at})`;
        },
        close: async () => {
          (server as http.Server).closeAllConnections?.();
          await settledWithin(new Promise<void>((resolve) => server.close(() => resolve())), 2_000);
          entries.delete(entry);
        },
      });
      server.once('close', () => entries.delete(entry));
    }
    return listen.apply(this, args);
  } as typeof net.Server.prototype.listen;
}

function describeCommand(args: readonly string[]): string {
  return args
    .map((a, i) => (i === 0 && a === process.execPath ? 'node' : a.startsWith(PROJECT_DIR + path.sep) ? path.relative(PROJECT_DIR, a) : a))
    .join(' ')
    .slice(0, 160);
}

function installChildren(): void {
  // ChildProcess#spawn is undocumented (absent from @types/node), yet every spawn(), exec() and fork() goes through it.
  type Spawning = { spawn(this: ChildProcess, options: { detached?: boolean }): unknown };
  const proto = ChildProcess.prototype as unknown as Spawning;
  const spawn = proto.spawn;
  proto.spawn = function (this: ChildProcess, options: { detached?: boolean }) {
    const result = spawn.call(this, options);
    const child = this;
    const pid = child.pid;
    if (pid === undefined) return result; // failed to start: 'error' follows, nothing runs
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const gone = () => child.exitCode !== null || child.signalCode !== null || !isRunning(pid);
    const entry = track({
      resource: child,
      check: async () => {
        if (!gone() && child.killed) await settledWithin(exited, CLOSING_GRACE_MS);
        if (gone()) {
          entries.delete(entry);
          return null;
        }
        return `child process pid ${pid} (${describeCommand(child.spawnargs)}) still running (started at ${entry.at})`;
      },
      close: async () => {
        const family = [...descendants(pid)];
        try {
          if (options.detached) process.kill(-pid, 'SIGKILL');
          else child.kill('SIGKILL');
        } catch {
          // gone meanwhile
        }
        for (const p of family) {
          try {
            process.kill(p, 'SIGKILL');
          } catch {
            // gone meanwhile
          }
        }
        await settledWithin(exited, 2_000);
        entries.delete(entry);
      },
    });
    child.once('exit', () => entries.delete(entry));
    return result;
  };
}

let installed = false;

/** Starts tracking pools, clients, servers and child processes (once per process; before any test code). */
export function installLeakTracking(): void {
  if (installed) return;
  installed = true;
  installPg();
  installServers();
  installChildren();
}

/** True while a top-level test runs (between its beforeEach and its leak check). */
export function testRunning(): boolean {
  return current !== null;
}

/** Marks `test` as the running top-level test: what is opened from now on is its own. */
export function enterTest(test: object): void {
  current = test;
  pending = [];
}

/**
 * Queues problems found by a helper's teardown (the test database's check) for the running top-level
 * test's leak report; with no test running (a file-level database) they are thrown at once.
 */
export function reportLeaks(problems: string[]): void {
  if (problems.length === 0) return;
  if (current === null) throw new Error(`leak check: ${problems.join('; ')}`);
  pending.push(...problems);
}

async function sweep(select: (e: Entry) => boolean): Promise<string[]> {
  const open: { entry: Entry; what: string }[] = [];
  for (const entry of [...entries].filter(select)) {
    const what = await entry.check();
    if (what !== null) open.push({ entry, what });
  }
  // Close only after every check: closing one (a pool) must not hide another (the server using it).
  for (const { entry } of open) await entry.close().catch(() => {});
  return open.map((o) => o.what);
}

/** What `test` opened and left open (closed now), plus what its helpers reported; the test is no longer current. */
export async function leaksOfTest(test: object): Promise<string[]> {
  const found = [...pending, ...(await sweep((e) => e.owner === test))];
  pending = [];
  if (current === test) current = null;
  return found;
}

/** Everything still open, whoever opened it (closed now): the check at the end of a file. */
export function leaksOfFile(): Promise<string[]> {
  return sweep(() => true);
}

/** What the file opened outside its tests and is still open, without closing it. */
export async function openFileResources(): Promise<string[]> {
  const open: string[] = [];
  for (const e of [...entries].filter((x) => x.owner === null)) {
    const what = await e.check();
    if (what !== null) open.push(what);
  }
  return open;
}

/** Open pools and clients connected to `database` other than `except` (closed now), so that it can be dropped. */
export function leaksOnDatabase(database: string, except?: object): Promise<string[]> {
  return sweep((e) => e.database === database && e.resource !== except);
}

/** Which tracked pool or client holds the session of backend `pid`, when one does. */
export function holderOfBackend(pid: number): string | undefined {
  for (const e of entries) {
    if (e.backendPids?.().includes(pid)) return `${e.database === undefined ? 'connection' : `a connection to ${e.database}`} opened at ${e.at}`;
  }
  return undefined;
}
