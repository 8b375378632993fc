/**
 * Samples running full scans and graphile-worker's job table at a fixed interval (200 ms by default)
 * until every scan has finished, on a connection of its own so that a busy pool never delays a sample.
 */
import pg from 'pg';

/** One scan as of a sample. */
export interface ScanState {
  id: number;
  discovered: number;
  finalized: number;
  finished: boolean;
  /** Enumeration waits for room in the admission window. */
  paused: boolean;
}

/** One sample: ms since the sampler started, rows in the job table, the scans. */
export interface Sample {
  ms: number;
  jobs: number;
  scans: ScanState[];
}

/**
 * Calls `onSample` every `intervalMs` (the next sample waits for the callback) until every scan of
 * `scanIds` has finished_at set; resolves with the last sample.
 */
export async function sampleUntilFinished(
  url: string,
  scanIds: number[],
  onSample: (s: Sample) => void | Promise<void>,
  intervalMs = 200,
): Promise<Sample> {
  const client = new pg.Client({ connectionString: url, application_name: 'dsx-bench-sampler' });
  await client.connect();
  const t0 = performance.now();
  try {
    for (let next = t0 + intervalMs; ; next = Math.max(next + intervalMs, performance.now())) {
      const { rows } = await client.query<{ jobs: number; scans: ScanState[] }>(
        `select (select count(*)::int from graphile_worker._private_jobs) as jobs,
                (select json_agg(json_build_object('id', f.id, 'discovered', f.discovered, 'finalized', f.finalized,
                                                   'finished', f.finished_at is not null,
                                                   'paused', f.enumeration_paused_at is not null) order by f.id)
                   from dsx.full_scans f where f.id = any($1::bigint[])) as scans`,
        [scanIds],
      );
      const sample: Sample = { ms: Math.round(performance.now() - t0), jobs: rows[0]!.jobs, scans: rows[0]!.scans };
      await onSample(sample);
      if (sample.scans.every((s) => s.finished)) return sample;
      const wait = next - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  } finally {
    await client.end();
  }
}
