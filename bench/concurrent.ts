/**
 * Scenario `concurrent`: two full scans of equal synthetic scopes started together, run by the same five
 * role processes as `scale`, with the instant scanner. Fair share means each makes progress while the
 * other runs: over the time both run (until the first finishes), each one's share of the objects
 * finalized must be at least 40% (target of the issue).
 */
import { fullScanStart } from '../src/db/sql/full-scans.ts';
import { startEmulatorProcess, type BenchServer } from './env.ts';
import { queuePeakInstall, queuePeakRead, queuePeakRemove } from './queue-peak.ts';
import { roleCpu, roleEnv, roleFigures, syntheticScope } from './scale.ts';
import { sampleUntilFinished } from './scan-sampler.ts';
import type { BenchOptions } from './scenarios.ts';
import { round2, scaledOut, startRoleProcesses, stopRoleProcesses, type RoleProcess } from './worker-processes.ts';

const FAIR_SHARE = 0.4;

export async function concurrent(server: BenchServer, o: BenchOptions) {
  const emu = await startEmulatorProcess({ latencyMs: 0, capacity: 256 });
  const { url, pool } = await server.database('bench_concurrent', 6);
  let roles: RoleProcess[] = [];
  try {
    // --objects is the size of each scope.
    const scopes = [await syntheticScope(pool, 'scope_a', o.objects), await syntheticScope(pool, 'scope_b', o.objects)];
    const baseline = await queuePeakInstall(pool);
    roles = await startRoleProcesses(url, scaledOut(o.concurrency), roleEnv(o, emu.url));
    const cpuAtStart = roleCpu(roles);
    const t0 = performance.now();
    const ids: number[] = [];
    for (const s of scopes) ids.push((await fullScanStart(pool, s, 'bench')).fullScanId);
    // Finalized per scan at the first sample where one of them has finished: the overlap.
    let overlap: { ms: number; finalized: number[] } | null = null;
    let sampledPeak = 0;
    await sampleUntilFinished(url, ids, (s) => {
      sampledPeak = Math.max(sampledPeak, s.jobs);
      if (!overlap && s.scans.some((scan) => scan.finished)) overlap = { ms: s.ms, finalized: s.scans.map((scan) => scan.finalized) };
    });
    const seconds = (performance.now() - t0) / 1000;
    const cpu = roleFigures(roles, 2 * o.objects, cpuAtStart);
    await stopRoleProcesses(roles);
    roles = [];
    const exact = await queuePeakRead(pool, baseline);
    await queuePeakRemove(pool);
    const { rows } = await pool.query<{ id: number; status: string; finalized: number; window: number; started: Date; finished: Date }>(
      `select id::int, status, finalized::int, scan_window as window, started_at as started, finished_at as finished
         from dsx.full_scans where id = any($1::bigint[]) order by id`,
      [ids],
    );
    const o2 = overlap as { ms: number; finalized: number[] } | null;
    const together = o2 ? o2.finalized.reduce((a, b) => a + b, 0) : 0;
    const shares = o2 ? o2.finalized.map((f) => round2(f / Math.max(1, together))) : [];
    return {
      objects_per_scope: o.objects,
      seconds,
      objects_per_s: (2 * o.objects) / seconds,
      scans: rows.map((r, i) => ({
        id: r.id,
        status: r.status,
        finalized: r.finalized,
        seconds: (r.finished.getTime() - r.started.getTime()) / 1000,
        objects_per_s: Math.round(r.finalized / ((r.finished.getTime() - r.started.getTime()) / 1000)),
        finalized_while_both_ran: o2?.finalized[i] ?? null,
        share_while_both_ran: shares[i] ?? null,
        objects_per_s_while_both_ran: o2 ? Math.round(o2.finalized[i]! / (o2.ms / 1000)) : null,
      })),
      both_ran_s: o2 ? o2.ms / 1000 : null,
      queue: { windows: rows.map((r) => r.window), peak_rows_sampled: sampledPeak, peak_rows_exact: exact?.peak_rows ?? null },
      cpu: { roles: cpu },
      target_min_share: FAIR_SHARE,
      holds: shares.length === 2 && shares.every((s) => s >= FAIR_SHARE),
    };
  } finally {
    await stopRoleProcesses(roles);
    await pool.end();
    await emu.stop();
  }
}
