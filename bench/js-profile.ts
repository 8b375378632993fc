/**
 * Where the bench process's own CPU goes during a phase, by package: V8's sampling profiler (the
 * inspector's Profiler domain, in process) started before the phase and stopped after it, its samples
 * summed per self function and grouped by where the function lives (an npm package, a folder of ours,
 * Node's internals, the garbage collector). On only when `BENCH_CPU_PROFILE=DIR` is set, because
 * sampling costs the measured process time (~10% here); the raw `.cpuprofile` files are written to DIR
 * for Chrome DevTools or speedscope.
 */
import fs from 'node:fs';
import { Session } from 'node:inspector/promises';
import path from 'node:path';
import { PROJECT_DIR } from '../src/config.ts';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Milliseconds of self time per group, most first (groups under 1% of the total are summed in "other"). */
export type ProfileSummary = { total_ms: number; by_group_ms: Record<string, number>; top_functions_ms: Record<string, number> };

/** The group of a function: the npm package (`@aws-sdk/client-s3`), our folder (`src/pipeline`), or what V8 calls it. */
function groupOf(node: ProfileNode): string {
  const { url, functionName } = node.callFrame;
  if (!url) return functionName.startsWith('(') ? functionName : '(native)';
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1]!;
  if (url.startsWith('node:')) return 'node internals';
  const rel = url.replace(/^file:\/\//, '').replace(`${PROJECT_DIR}/`, '');
  return rel.split('/').slice(0, rel.startsWith('src/') ? 2 : 1).join('/');
}

function summarize(p: Profile): ProfileSummary {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const groups = new Map<string, number>();
  const fns = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const node = byId.get(p.samples[i]!);
    const us = p.timeDeltas[i] ?? 0;
    if (!node || node.callFrame.functionName === '(idle)') continue;
    total += us;
    const g = groupOf(node);
    groups.set(g, (groups.get(g) ?? 0) + us);
    const f = `${node.callFrame.functionName || '(anonymous)'} ${g}`;
    fns.set(f, (fns.get(f) ?? 0) + us);
  }
  const ms = (us: number) => Math.round(us / 100) / 10;
  const byGroup: Record<string, number> = {};
  let other = 0;
  for (const [g, us] of [...groups].sort((a, b) => b[1] - a[1])) {
    if (us < total / 100) other += us;
    else byGroup[g] = ms(us);
  }
  if (other > 0) byGroup.other = ms(other);
  const top = Object.fromEntries([...fns].sort((a, b) => b[1] - a[1]).slice(0, 15).map(([f, us]) => [f, ms(us)]));
  return { total_ms: ms(total), by_group_ms: byGroup, top_functions_ms: top };
}

/** A profiler of this process; a no-op unless BENCH_CPU_PROFILE names a directory. */
export class JsProfiler {
  readonly #dir = process.env.BENCH_CPU_PROFILE;
  readonly #name: string;
  #session: Session | undefined;

  constructor(name: string) {
    this.#name = name;
  }

  async start(): Promise<void> {
    if (!this.#dir) return;
    this.#session = new Session();
    this.#session.connect();
    await this.#session.post('Profiler.enable');
    // 1 ms between samples (V8's default is 1 ms too; said here so the summary's resolution is known).
    await this.#session.post('Profiler.setSamplingInterval', { interval: 1000 });
    await this.#session.post('Profiler.start');
  }

  /** Stops, writes DIR/<name>.cpuprofile and returns the summary; null when profiling is off. */
  async stop(): Promise<ProfileSummary | null> {
    if (!this.#session || !this.#dir) return null;
    const { profile } = (await this.#session.post('Profiler.stop')) as { profile: Profile };
    this.#session.disconnect();
    this.#session = undefined;
    fs.mkdirSync(this.#dir, { recursive: true });
    fs.writeFileSync(path.join(this.#dir, `${this.#name}-${new Date().toISOString().replace(/[:.]/g, '-')}.cpuprofile`), JSON.stringify(profile));
    return summarize(profile);
  }
}
