/**
 * A real pino logger whose lines a test can wait on: what the product logs when something happened
 * that leaves no other trace (a watcher saw its root vanish, a pool was restarted) is the event.
 */
import { EventEmitter } from 'node:events';
import { pino } from 'pino';
import type { Logger } from '../../src/log.ts';
import { nextEvent } from './wait.ts';

/** One parsed log line. */
export type LogLine = { msg?: string; level: number } & Record<string, unknown>;

/** A logger for the code under test, and its lines. */
export interface CapturedLogs {
  log: Logger;
  lines: LogLine[];
  /** The next line (from now on) whose message matches `msg` and whose fields pass `filter`. */
  next(msg: string | RegExp, filter?: (line: LogLine) => boolean, ms?: number): Promise<LogLine>;
}

/** Captures the logs of the code given `log`, from `level` up. */
export function captureLogs(level = 'info'): CapturedLogs {
  const emitter = new EventEmitter();
  const lines: LogLine[] = [];
  const log = pino(
    { level },
    {
      write(text: string) {
        const line = JSON.parse(text) as LogLine;
        lines.push(line);
        emitter.emit('line', line);
      },
    },
  );
  return {
    log,
    lines,
    async next(msg, filter = () => true, ms = 30_000) {
      const matches = (l: LogLine) => (typeof msg === 'string' ? l.msg === msg : msg.test(l.msg ?? '')) && filter(l);
      const [line] = await nextEvent<[LogLine]>(emitter, 'line', `a log line ${String(msg)}`, ms, matches);
      return line;
    },
  };
}
