/**
 * How a dsx-connect process stops. SIGINT (Ctrl-C), SIGTERM (kill, systemd, a forwarding parent such as
 * npm) and SIGHUP (the terminal went away) all ask for a graceful stop:
 *
 * - a long-running command (dev, worker, server, dsxa-emulator, --follow) waits for the signal with
 *   `untilStopSignal()` / `onStopSignal()` and stops its parts in order, then exits 0;
 * - any other command is interrupted: the resources it registered with `closeOnStop()` (its database,
 *   and with it an embedded PostgreSQL it started) are closed, then it exits 128 + the signal number;
 * - the same signal again, later than `REPEAT_WINDOW_MS` after the first, forces an immediate exit.
 */
import os from 'node:os';

/** The signals that stop a process. */
export const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
export type StopSignal = (typeof STOP_SIGNALS)[number];

/**
 * A stop signal repeated within this many milliseconds is the same request delivered twice, not a second
 * Ctrl-C: the terminal sends Ctrl-C's SIGINT to the whole foreground process group, and a forwarding
 * parent (npm, npx, bin/dsx-connect.js) sends it once more a few milliseconds later. A person pressing
 * Ctrl-C again because a stop is taking too long does so seconds later.
 */
export const REPEAT_WINDOW_MS = 1000;

/** The exit code of a process ended by `sig` before its work was done: 128 + its number (130 for SIGINT). */
export function signalExitCode(sig: StopSignal): number {
  return 128 + os.constants.signals[sig];
}

const handlers: ((sig: StopSignal) => void)[] = [];
const closers = new Set<() => Promise<void>>();
let first: { sig: StopSignal; at: number } | undefined;
let installed = false;
let interrupting = false;

/** True once a stop signal is interrupting the command: an error its work raises now is not worth reporting. */
export function interrupted(): boolean {
  return interrupting;
}

/** Installs the handlers (once per process, before anything else listens). */
export function installStopSignals(): void {
  if (installed) return;
  installed = true;
  for (const sig of STOP_SIGNALS) process.on(sig, () => received(sig));
}

function received(sig: StopSignal): void {
  const now = performance.now();
  if (!first) {
    first = { sig, at: now };
    if (handlers.length > 0) {
      for (const h of [...handlers]) h(sig);
    } else {
      void interrupt(sig);
    }
    return;
  }
  if (now - first.at < REPEAT_WINDOW_MS) return;
  process.stderr.write(`\n${sig} again: exiting now, without waiting for work in progress\n`);
  process.exit(signalExitCode(first.sig));
}

async function interrupt(sig: StopSignal): Promise<void> {
  interrupting = true;
  await Promise.allSettled([...closers].map((close) => close()));
  process.exit(signalExitCode(sig));
}

/**
 * Calls `handler` on the first stop signal instead of interrupting the command; returns a function that
 * unregisters it.
 */
export function onStopSignal(handler: (sig: StopSignal) => void): () => void {
  installStopSignals();
  handlers.push(handler);
  return () => {
    const i = handlers.indexOf(handler);
    if (i >= 0) handlers.splice(i, 1);
  };
}

/** Resolves with the first stop signal (for commands that run until stopped). */
export function untilStopSignal(): Promise<StopSignal> {
  return new Promise((resolve) => {
    const off = onStopSignal((sig) => {
      off();
      resolve(sig);
    });
  });
}

/** Registers `close` to run when the command is interrupted; returns a function that unregisters it. */
export function closeOnStop(close: () => Promise<void>): () => void {
  installStopSignals();
  closers.add(close);
  return () => closers.delete(close);
}
