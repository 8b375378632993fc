/**
 * Real processes for the CLI's lifecycle tests: spawn one and wait on its output and its exit, find its
 * children and whether they still run (Linux /proc), check a port, and a data directory for an
 * embedded PostgreSQL that is cleaned up even when a test fails half-way.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Test } from 'tap';
import { PROJECT_DIR } from '../../src/config.ts';
import { isRunning, processesWith } from './proc.ts';
import { waitFor } from './wait.ts';

/** `dsx-connect` as run by `npm start` and the tests (the project's Node 24 runs it directly). */
export const MAIN = path.join(PROJECT_DIR, 'src', 'cli', 'main.ts');
/** The wrapper users run (re-runs itself under the project's Node 24 when started by an older Node). */
export const BIN = path.join(PROJECT_DIR, 'bin', 'dsx-connect.js');

/** A process under test: its output so far, and ways to wait on it. */
export interface Running {
  proc: ChildProcess;
  pid: number;
  stdout(): string;
  stderr(): string;
  /** Resolves with the output once `pattern` appears on stdout; rejects if the process ends first or after `ms`. */
  waitForStdout(pattern: RegExp, ms?: number): Promise<string>;
  /** Resolves when the process has exited; rejects after `ms`. */
  exited(ms?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * The environment of a product process started by a test: this one's, without anything that would point
 * it elsewhere (a database, a scanner, an API, npm's own variables) and without reading any `.env`.
 */
export function productEnv(extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(npm_|DATABASE_URL$|DSXA_|DSX_)/.test(k)) continue;
    env[k] = v;
  }
  return { ...env, DSX_ENV_FILE: '/dev/null', ...extra };
}

/** Spawns a process whose output is collected; the test's teardown kills it (and its group) if it still runs. */
export function start(t: Test, command: string, args: string[], opts: SpawnOptions & { stdin?: string } = {}): Running {
  const proc = spawn(command, args, { ...opts, stdio: [opts.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
  if (opts.stdin !== undefined) proc.stdin!.end(opts.stdin);
  let out = '';
  let err = '';
  const listeners = new Set<() => void>();
  proc.stdout!.on('data', (d: Buffer) => {
    out += d;
    for (const l of listeners) l();
  });
  proc.stderr!.on('data', (d: Buffer) => {
    err += d;
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal })),
  );
  t.teardown(async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    try {
      if (opts.detached) process.kill(-proc.pid!, 'SIGKILL');
      else proc.kill('SIGKILL');
    } catch {
      // already gone
    }
    await exit;
  });
  const within = <T>(p: Promise<T>, ms: number, what: string): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}\nstdout: ${out}\nstderr: ${err}`)), ms);
      p.then(
        (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        (e: unknown) => {
          clearTimeout(timer);
          reject(e);
        },
      );
    });
  return {
    proc,
    pid: proc.pid!,
    stdout: () => out,
    stderr: () => err,
    waitForStdout(pattern, ms = 60_000) {
      const seen = new Promise<string>((resolve, reject) => {
        const check = () => {
          if (!pattern.test(out)) return;
          listeners.delete(check);
          resolve(out);
        };
        listeners.add(check);
        check();
        void exit.then(({ code, signal }) => reject(new Error(`exited (${code ?? signal}) before printing ${pattern}\nstdout: ${out}\nstderr: ${err}`)));
      });
      return within(seen, ms, String(pattern));
    },
    exited(ms = 60_000) {
      return within(exit, ms, 'the process to exit');
    },
  };
}

/** The `node` on PATH outside node_modules (the machine's own Node, which may be older than 22.18). */
export function systemNode(): { path: string; pathEnv: string } {
  const dirs = (process.env.PATH ?? '').split(path.delimiter).filter((d) => d && !d.includes('node_modules'));
  for (const dir of dirs) {
    const candidate = path.join(dir, 'node');
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return { path: candidate, pathEnv: dirs.join(path.delimiter) };
    } catch {
      // not here
    }
  }
  throw new Error('no node on PATH outside node_modules');
}

export { childPids, commandLine, descendants, isRunning, processesWith } from './proc.ts';

/** The port of the first `http://127.0.0.1:PORT` a process printed (servers started with port 0). */
export function printedPort(output: string): number {
  const m = /http:\/\/127\.0\.0\.1:(\d+)/.exec(output);
  if (!m) throw new Error(`no http://127.0.0.1:PORT in ${JSON.stringify(output)}`);
  return Number(m[1]);
}

/**
 * A port free now and below Linux's ephemeral range (32768-60999), for a server that must get a fixed
 * port (the embedded PostgreSQL): a port from the ephemeral range can be taken meanwhile by any
 * outgoing connection of the machine.
 */
export async function freeFixedPort(): Promise<number> {
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * 12_000);
    const free = await new Promise<boolean>((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (free) return port;
  }
}

/** True when something accepts TCP connections on 127.0.0.1:`port`. */
export function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * A temporary DSX_DATA_DIR for an embedded PostgreSQL. It is readable by others (when run as root, the
 * server runs as the `postgres` user); the teardown stops a server still running from it (a failed
 * test) and removes it.
 */
export function dataDir(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-cli-test-'));
  fs.chmodSync(dir, 0o755);
  t.teardown(async () => {
    const left = processesWith(path.join(dir, 'pg'));
    for (const pid of left) {
      try {
        process.kill(pid, 'SIGQUIT');
      } catch {
        // gone meanwhile
      }
    }
    // Not our children (a server a killed CLI left behind): no exit event reaches us, so poll /proc.
    await waitFor(() => !left.some(isRunning), `the embedded PostgreSQL of ${dir} to stop`, 5_000).catch(() => {});
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

/** Lines of pino's JSON logs in `text` at `minLevel` or above (50 = error). */
export function logLinesAtLeast(text: string, minLevel: number): string[] {
  return text.split('\n').filter((line) => {
    if (!line.startsWith('{')) return false;
    try {
      return (JSON.parse(line) as { level?: number }).level! >= minLevel;
    } catch {
      return false;
    }
  });
}
