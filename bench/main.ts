/**
 * `npm run bench [-- --scenario NAME] [--objects N] [--concurrency N] [--json]`: runs the scenarios on
 * this machine with a throwaway embedded PostgreSQL, prints a table (or one JSON report with --json)
 * and writes the report to bench/results/.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig, PROJECT_DIR } from '../src/config.ts';
import { startServer } from './env.ts';
import { monitorLatency, progressLatency } from './latency.ts';
import { ceiling, enumeration, filesystem, overhead, scannerBound } from './scenarios.ts';

const SCENARIOS = {
  ceiling,
  overhead,
  'scanner-bound': scannerBound,
  enumeration,
  'monitor-latency': monitorLatency,
  'progress-latency': progressLatency,
  filesystem,
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
};

const { values } = parseArgs({
  options: {
    scenario: { type: 'string', multiple: true },
    objects: { type: 'string' },
    concurrency: { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});
const names = (values.scenario ?? Object.keys(SCENARIOS)) as Name[];
for (const n of names) {
  if (!(n in SCENARIOS)) {
    console.error(`unknown scenario ${JSON.stringify(n)} (expected one of ${Object.keys(SCENARIOS).join(', ')})`);
    process.exit(2);
  }
}
// Default: the product's own worker concurrency (DSX_WORKER_CONCURRENCY), so the ceiling is ours.
const concurrency = values.concurrency ? Number(values.concurrency) : loadConfig().workerConcurrency;
const server = await startServer();
const report: Record<string, unknown> = {
  machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, memory_gb: Math.round(os.totalmem() / 2 ** 30), node: process.version, postgres: server.version },
  settings: { concurrency },
  started_at: new Date().toISOString(),
  scenarios: {},
};
try {
  for (const name of names) {
    const objects = values.objects ? Number(values.objects) : DEFAULT_OBJECTS[name];
    if (!values.json) process.stderr.write(`running ${name} (${objects} objects)...\n`);
    (report.scenarios as Record<string, unknown>)[name] = await SCENARIOS[name](server, { objects, concurrency });
  }
} finally {
  await server.stop();
}
const dir = path.join(PROJECT_DIR, 'bench', 'results');
fs.mkdirSync(dir, { recursive: true });
fs.writeFileSync(path.join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}.json`), JSON.stringify(report, null, 2));
if (values.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
else console.log(JSON.stringify(report.scenarios, null, 2));
