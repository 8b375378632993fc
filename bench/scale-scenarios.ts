/**
 * The scale-out scenarios as bench/main.ts registers them: names, default sizes and their rows of the
 * summary table (kept here so that main.ts only spreads them in).
 */
import { concurrent } from './concurrent.ts';
import { scale } from './scale.ts';

/** `scale` (one scan of 2,000,000 objects) and `concurrent` (two scans at once). */
export const SCALE_SCENARIOS = { scale, concurrent } as const;

export const SCALE_DEFAULT_OBJECTS: Record<keyof typeof SCALE_SCENARIOS, number> = {
  scale: 2_000_000,
  // Per scope: two scans of 100,000 objects each.
  concurrent: 100_000,
};

type Fmt = (x: number | null | undefined, d?: number) => string;
type Yes = (b: boolean | undefined) => string;

/** Summary rows: figure, target, holds. */
export function scaleSummaryRows(r: Record<string, any>, n: Fmt, yes: Yes): string[][] {
  const rows: string[][] = [];
  const s = r.scale;
  if (s) {
    const size = `${n(s.objects)} objects`;
    rows.push([`10 scale rate (${size})`, `first 10% ${n(s.rate.first_tenth_per_s)}/s, last 10% ${n(s.rate.last_tenth_per_s)}/s = ${n(s.rate.last_to_first, 2)}; ${n(s.objects_per_s)}/s in ${n(s.seconds / 60, 1)} min`, 'last >= 0.9 x first, < 30 min', `${yes(s.holds.rate)}, ${yes(s.holds.under_30_minutes)}`]);
    rows.push(['10 scale queue', `peak ${n(s.queue.peak_rows_exact ?? s.queue.peak_rows_sampled)} job rows (sampled ${n(s.queue.peak_rows_sampled)}), window ${n(s.queue.window)}`, '<= window + 100', yes(s.holds.queue_bounded)]);
    rows.push(['10 scale database', `${n(s.size.bytes_per_object)} bytes/object (${n(s.size.database_bytes / 2 ** 20)} MB)`, '', '']);
    const g = s.memory.growth as Record<string, number | null>;
    const cp = s.memory.at_checkpoint;
    const end = s.memory.at_end;
    const procs = Object.keys(end.processes_peak_rss_mb)
      .map((k) => `${k} ${n(cp?.processes_peak_rss_mb[k])}->${n(end.processes_peak_rss_mb[k])}`)
      .join(', ');
    rows.push([`10 scale RSS MB (${n(cp?.finalized)} -> ${n(end.finalized)})`, `${procs}; postgres private ${n(cp?.postgres_peak_private_mb)}->${n(end.postgres_peak_private_mb)}, PSS ${n(cp?.postgres_peak_pss_mb)}->${n(end.postgres_peak_pss_mb)}`, 'within 10%', `${yes(s.holds.rss_flat_workers)} (worst ${n(Math.max(...Object.values(g).filter((x): x is number => x !== null)) * 100)}%)`]);
  }
  const c = r.concurrent;
  if (c) {
    const shares = c.scans.map((x: any) => `${n((x.share_while_both_ran ?? 0) * 100)}% (${n(x.objects_per_s_while_both_ran)}/s)`).join(' / ');
    rows.push(['11 two concurrent scans', `shares while both ran ${shares}; ${n(c.objects_per_s)}/s in all`, 'each >= 40%', yes(c.holds)]);
  }
  return rows;
}
