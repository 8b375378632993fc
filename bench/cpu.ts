/**
 * Where a scenario's CPU went: CPU time of the processes taking part (the bench process, the DSXA
 * emulator, the local storage server, PostgreSQL), read from /proc before and after a measured phase,
 * beside the whole machine's busy time, whose remainder is everyone else on the machine. Linux only;
 * elsewhere every figure is null.
 *
 * Times in /proc/<pid>/stat are in clock ticks of USER_HZ, which Linux fixes at 100 per second for
 * user space (`getconf CLK_TCK` prints 100 here), so each reading is good to 10 ms.
 */
import fs from 'node:fs';
import os from 'node:os';

const TICKS_PER_S = 100;

/** utime, stime, cutime, cstime of a process in ticks, or null once it is gone. */
function ticksOf(pid: number): { own: number; reaped: number; ppid: number } | null {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // The command name (field 2) is in parentheses and may contain spaces: count fields after its ")".
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 4 (ppid) and 14-17 (utime stime cutime cstime) of proc(5), here at offsets 1 and 11-14.
  return { ppid: Number(f[1]), own: Number(f[11]) + Number(f[12]), reaped: Number(f[13]) + Number(f[14]) };
}

/** The live children of `pid`. */
function childrenOf(pid: number): number[] {
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return [];
  }
  return entries.map(Number).filter((p) => ticksOf(p)?.ppid === pid);
}

/**
 * How to read one participant's CPU seconds so far:
 * - `process`: that process alone (all its threads);
 * - `tree`: a server and its worker processes (PostgreSQL's postmaster and backends): the server's own
 *   time, the time of its children that already exited (the kernel adds it to the parent's cutime and
 *   cstime when it reaps them), and that of its live children.
 */
export type Participant = { kind: 'process' | 'tree'; pid: number };

function secondsOf(p: Participant): number | null {
  const t = ticksOf(p.pid);
  if (t === null) return null;
  let ticks = t.own;
  if (p.kind === 'tree') {
    ticks += t.reaped;
    for (const c of childrenOf(p.pid)) ticks += ticksOf(c)?.own ?? 0;
  }
  return ticks / TICKS_PER_S;
}

/** Read and write system calls of a process so far (/proc/<pid>/io; sockets included), or null. */
function syscallsOf(pid: number): { reads: number; writes: number } | null {
  try {
    const io = fs.readFileSync(`/proc/${pid}/io`, 'utf8');
    const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(io)?.[1] ?? NaN);
    return { reads: field('syscr'), writes: field('syscw') };
  } catch {
    return null;
  }
}

/**
 * CPU seconds of the whole machine so far (all cores), from /proc/stat: busy (user, nice, system, irq,
 * softirq), of which interrupts (irq, softirq: much of loopback networking runs there, charged to no
 * process), steal (the hypervisor ran another guest) and the total.
 */
function machineSeconds(): { busy: number; interrupts: number; steal: number; total: number } | null {
  try {
    const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    const [user, nice, system, idle, iowait, irq, softirq, steal] = line.trim().split(/\s+/).slice(1, 9).map(Number) as number[];
    const s = (ticks: number) => ticks / TICKS_PER_S;
    return {
      busy: s(user! + nice! + system! + irq! + softirq!),
      interrupts: s(irq! + softirq!),
      steal: s(steal!),
      total: s(user! + nice! + system! + idle! + iowait! + irq! + softirq! + steal!),
    };
  } catch {
    return null;
  }
}

/** CPU use of a measured phase: seconds per participant, the rest of the machine, and per object. */
export interface CpuProfile {
  wall_s: number;
  /** os.loadavg() (1, 5, 15 minutes) when the phase started: how busy the machine was beforehand. */
  load_average_at_start: number[];
  /**
   * CPU seconds per participant during the phase, then `interrupts` (irq and softirq time, charged to no
   * process: loopback networking, mostly), `others` (the rest of the machine's busy time: everyone
   * else) and `steal` (time the hypervisor gave another guest).
   */
  cpu_s: Record<string, number | null>;
  /** Share of all cores busy during the phase (1 = every core all the time). */
  machine_busy: number | null;
  /** CPU microseconds per object per participant (the phase's objects). */
  cpu_us_per_object: Record<string, number | null>;
  /**
   * Read and write system calls per object of each single-process participant (socket reads and writes
   * are most of them): how many round trips and flushes the work took.
   */
  syscalls_per_object: Record<string, { reads: number; writes: number } | null>;
}

/** Measures one phase: `start()` right before it, `stop(objects)` right after. */
export class CpuMeter {
  readonly #participants: Record<string, Participant>;
  #t0 = 0;
  #load: number[] = [];
  #before: Record<string, number | null> = {};
  #syscalls: Record<string, { reads: number; writes: number } | null> = {};
  #machine: ReturnType<typeof machineSeconds> = null;

  constructor(participants: Record<string, Participant>) {
    this.#participants = participants;
  }

  start(): void {
    this.#load = os.loadavg().map((x) => Math.round(x * 100) / 100);
    this.#before = Object.fromEntries(Object.entries(this.#participants).map(([k, p]) => [k, secondsOf(p)]));
    this.#syscalls = this.#syscallsNow();
    this.#machine = machineSeconds();
    this.#t0 = performance.now();
  }

  stop(objects: number): CpuProfile {
    const wall = (performance.now() - this.#t0) / 1000;
    const machine = machineSeconds();
    const syscalls = this.#syscallsNow();
    const cpu: Record<string, number | null> = {};
    for (const [k, p] of Object.entries(this.#participants)) {
      const a = this.#before[k];
      const b = secondsOf(p);
      cpu[k] = a === null || a === undefined || b === null ? null : round2(b - a);
    }
    let busyShare: number | null = null;
    const m0 = this.#machine;
    if (machine && m0) {
      const busy = machine.busy - m0.busy;
      const interrupts = machine.interrupts - m0.interrupts;
      const ours = Object.values(cpu).reduce<number>((sum, x) => sum + (x ?? 0), 0);
      cpu.interrupts = round2(interrupts);
      cpu.others = round2(Math.max(0, busy - interrupts - ours));
      cpu.steal = round2(machine.steal - m0.steal);
      busyShare = round2(busy / Math.max(0.01, machine.total - m0.total));
    } else {
      cpu.interrupts = cpu.others = cpu.steal = null;
    }
    const perObject = Object.fromEntries(Object.entries(cpu).map(([k, s]) => [k, s === null ? null : Math.round((s * 1e6) / Math.max(1, objects))]));
    const per = (x: number) => round2(x / Math.max(1, objects));
    const syscallsPerObject = Object.fromEntries(
      Object.entries(syscalls).map(([k, b]) => {
        const a = this.#syscalls[k];
        return [k, a && b ? { reads: per(b.reads - a.reads), writes: per(b.writes - a.writes) } : null];
      }),
    );
    return {
      wall_s: round2(wall),
      load_average_at_start: this.#load,
      cpu_s: cpu,
      machine_busy: busyShare,
      cpu_us_per_object: perObject,
      syscalls_per_object: syscallsPerObject,
    };
  }

  #syscallsNow() {
    return Object.fromEntries(
      Object.entries(this.#participants)
        .filter(([, p]) => p.kind === 'process')
        .map(([k, p]) => [k, syscallsOf(p.pid)]),
    );
  }
}

/** The parent of a process on this machine, or null (PostgreSQL's postmaster is the parent of each backend). */
export function parentPid(pid: number): number | null {
  const t = ticksOf(pid);
  return t === null || t.ppid <= 1 ? null : t.ppid;
}

/** A child process of this one whose command line contains `needle`, or null. */
export function childWithArgument(needle: string): number | null {
  for (const pid of childrenOf(process.pid)) {
    try {
      if (fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(needle)) return pid;
    } catch {
      // exited meanwhile
    }
  }
  return null;
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
