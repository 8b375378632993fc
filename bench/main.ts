/**
 * `npm run bench [-- --scenario NAME] [--objects N] [--concurrency N] [--page-size N] [--profile] [--json]`: runs the scenarios on
 * this machine with a throwaway embedded PostgreSQL, prints a table (or one JSON report with --json)
 * and writes the report to bench/results/.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig, PROJECT_DIR } from '../src/config.ts';
import { azure, s3 } from './cloud.ts';
import { startServer } from './env.ts';
import { monitorLatency, progressLatency } from './latency.ts';
import { ceiling, enumeration, filesystem, overhead, scannerBound } from './scenarios.ts';
import { SCALE_SCENARIOS, SCALE_DEFAULT_OBJECTS, scaleSummaryRows } from './scale-scenarios.ts';

const SCENARIOS = {
  ceiling,
  overhead,
  'scanner-bound': scannerBound,
  enumeration,
  'monitor-latency': monitorLatency,
  'progress-latency': progressLatency,
  filesystem,
  ...SCALE_SCENARIOS,
  s3,
  azure,
} as const;
type Name = keyof typeof SCENARIOS;
const DEFAULT_OBJECTS: Record<Name, number> = {
  ceiling: 50_000,
  overhead: 100_000,
  'scanner-bound': 2_000,
  enumeration: 1_000_000,
  // The full scan the events are posted during (200 events on an idle system come first).
  'monitor-latency': 100_000,
  'progress-latency': 20_000,
  filesystem: 20_000,
  ...SCALE_DEFAULT_OBJECTS,
  s3: 20_000,
  azure: 20_000,
};

function parseOptions() {
  try {
    return parseArgs({
      options: {
        scenario: { type: 'string', multiple: true },
        objects: { type: 'string' },
        concurrency: { type: 'string' },
        'page-size': { type: 'string' },
        json: { type: 'boolean', default: false },
        profile: { type: 'boolean', default: false },
      },
    });
  } catch (err) {
    // An unknown option or a missing value: say which, as a usage error.
    console.error(`${(err as Error).message.split('\n')[0]} (usage: npm run bench -- [--scenario NAME] [--objects N] [--concurrency N] [--page-size N] [--profile] [--json])`);
    process.exit(2);
  }
}
const { values } = parseOptions();
const names = (values.scenario ?? Object.keys(SCENARIOS)) as Name[];
for (const n of names) {
  if (!(n in SCENARIOS)) {
    console.error(`unknown scenario ${JSON.stringify(n)} (expected one of ${Object.keys(SCENARIOS).join(', ')})`);
    process.exit(2);
  }
}
// Default: the product's own worker concurrency (DSX_WORKER_CONCURRENCY), so the ceiling is ours.
for (const flag of ['objects', 'concurrency', 'page-size'] as const) {
  const raw = values[flag];
  if (raw !== undefined && !(Number.isInteger(Number(raw)) && Number(raw) >= 1)) {
    console.error(`--${flag} must be a positive integer (got ${JSON.stringify(raw)})`);
    process.exit(2);
  }
}
const concurrency = values.concurrency ? Number(values.concurrency) : loadConfig().workerConcurrency;
const pageSize = values['page-size'] ? Number(values['page-size']) : 1000;
const server = await startServer();
const report: Record<string, unknown> = {
  machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, memory_gb: Math.round(os.totalmem() / 2 ** 30), node: process.version, postgres: server.version },
  settings: { concurrency, page_size: pageSize },
  started_at: new Date().toISOString(),
  scenarios: {},
};
try {
  for (const name of names) {
    const objects = values.objects ? Number(values.objects) : DEFAULT_OBJECTS[name];
    if (!values.json) process.stderr.write(`running ${name} (${objects} objects)...\n`);
    (report.scenarios as Record<string, unknown>)[name] = await SCENARIOS[name](server, { objects, concurrency, pageSize, profile: values.profile });
  }
} finally {
  await server.stop();
}
const dir = path.join(PROJECT_DIR, 'bench', 'results');
fs.mkdirSync(dir, { recursive: true });
fs.writeFileSync(path.join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}.json`), JSON.stringify(report, null, 2));
if (values.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
else {
  console.log(JSON.stringify(report.scenarios, null, 2));
  console.log(`\n${summaryTable(report.scenarios as Record<string, any>)}`);
}

/** One line per figure: what was measured, the target, and whether it holds. */
function summaryTable(r: Record<string, any>): string {
  const n = (x: number | null | undefined, d = 0) => (x === null || x === undefined ? '-' : x.toLocaleString('en-US', { maximumFractionDigits: d }));
  const yes = (b: boolean | undefined) => (b === undefined ? '' : b ? 'yes' : 'NO');
  const rows: string[][] = [];
  if (r.ceiling) rows.push(['1 queue ceiling', `${n(r.ceiling.jobs_per_s)} jobs/s`, '', '']);
  if (r.overhead) rows.push(['2 pipeline overhead', `${n(r.overhead.pipeline.objects_per_s)} objects/s = ${n(r.overhead.ratio, 3)} of ${n(r.overhead.ceiling.jobs_per_s)} jobs/s`, '>= 0.25', yes(r.overhead.holds)]);
  const sb = r['scanner-bound'];
  if (sb) rows.push(['3 scanner-bound', `${n(sb.pipeline.objects_per_s, 1)} vs ${n(sb.direct.objects_per_s, 1)} objects/s = ${n(sb.ratio, 3)}`, '>= 0.95', yes(sb.holds)]);
  const e = r.enumeration;
  if (e) {
    rows.push(['4 enumeration rate', `${n(e.objects_per_s)} objects/s`, '>= 20,000/s', yes(e.holds?.rate)]);
    rows.push(['4 enumeration RSS', `${n(e.peak_rss_mb_at_100k)} MB at 100k, ${n(e.peak_rss_mb_at_end)} MB at end`, '< 200 MB, within 10%', `${yes(e.holds?.rss_under_200mb)}, ${yes(e.holds?.rss_within_10_percent)}`]);
  }
  const m = r['monitor-latency'];
  if (m) {
    const i = m.idle.accepted_to_finalized_ms;
    const u = m.under_load.accepted_to_finalized_ms;
    rows.push(['5 monitoring idle', `p50 ${n(i.p50, 1)} ms, p99 ${n(i.p99, 1)} ms`, 'p50 <= 30, p99 <= 100', yes(m.holds.idle_p50 && m.holds.idle_p99)]);
    rows.push(['5 monitoring under load', `p50 ${n(u.p50, 1)} ms, p99 ${n(u.p99, 1)} ms (scan ${n(m.under_load.full_scan.objects_per_s)}/s)`, 'p99 <= 250', yes(m.holds.under_load_p99)]);
  }
  const p = r['progress-latency'];
  if (p) rows.push(['6 progress latency', `p50 ${n(p.latency_ms.p50, 1)} ms, p99 ${n(p.latency_ms.p99, 1)} ms`, 'p99 <= 250', yes(p.holds)]);
  if (r.filesystem) rows.push(['7 filesystem', `${n(r.filesystem.objects_per_s)} objects/s`, '', '']);
  rows.push(...scaleSummaryRows(r, n, yes));
  for (const [key, label] of [['s3', '8 S3 (fauxqs)'], ['azure', '9 Azure Blob (azurite)']] as const) {
    const c = r[key];
    if (!c) continue;
    const busy = c.quiet ? '' : ` (machine busy: others used up to ${n(Math.max(...Object.values(c.others_cores as Record<string, number | null>).map((x) => x ?? 0)), 2)} cores)`;
    rows.push([`${label} full scan`, `${n(c.pipeline.objects_per_s)} vs direct ${n(c.direct.objects_per_s)} objects/s = ${n(c.ratio, 3)}${busy}`, `>= ${c.target_ratio}`, yes(c.holds)]);
    const l = c.listing;
    const atPage = l.sdk_at_page_size.objects_per_s === l.sdk.objects_per_s ? '' : ` (${n(l.sdk_at_page_size.objects_per_s)}/s in pages of ${n(l.page_size)})`;
    rows.push([`${label} listing`, `connector ${n(l.connector.objects_per_s)}/s vs SDK ${n(l.sdk.objects_per_s)}/s${atPage} = ${n(l.connector_to_sdk, 3)}`, '(beside)', '']);
  }
  const all = [['scenario', 'figure', 'target', 'holds'], ...rows];
  const w = [0, 1, 2, 3].map((c) => Math.max(...all.map((row) => row[c]!.length)));
  return all.map((row) => row.map((cell, c) => cell.padEnd(w[c]!)).join('  ').trimEnd()).join('\n');
}
