import t from 'tap';
import { fullScanStart, fullScanVerify } from '../src/db/sql/full-scans.ts';
import { createTestDatabase } from './helpers/db.ts';
import { emulator, syntheticScope, testConfig, waitForEmptyQueue, waitForScan, workers } from './helpers/pipeline.ts';
import { seedMathRandom } from './helpers/seed.ts';

t.test('with 20% scanner faults and failing reads and listings, every object gets its true outcome', async (t) => {
  // The emulator's failRate and the fault-injecting connector draw from Math.random: seeded here.
  t.teardown(seedMathRandom());
  const db = await createTestDatabase(t);
  const emu = await emulator(t, { failRate: 0.2 }); // 500, 503, hangs and dropped connections, evenly
  const scope = await syntheticScope(db.pool, {
    objects: 600,
    settings: { eicar_every: 100, faults: { read_fail_rate: 0.1, list_fail_rate: 0.2 } },
  });
  const config = testConfig({ pageSize: 200, scanMaxAttempts: 5, dsxaTimeoutMs: 500 });
  const w = await workers(t, db.pool, { dsxaUrl: emu.url, config, concurrency: 32 });
  const { fullScanId } = await fullScanStart(db.pool, scope.id, 'tester');
  const scan = await waitForScan(db.pool, fullScanId, 120_000);
  t.match(scan, { status: 'completed', discovered: 600, finalized: 600, clean_count: 594, malicious_count: 6 });
  const faults = emu.stats().faults;
  t.ok(Object.values(faults).reduce((a, b) => a + b, 0) > 50, `faults were injected: ${JSON.stringify(faults)}`);
  t.ok((faults.hang ?? 0) > 0 && (faults.drop ?? 0) > 0, 'including hangs and dropped connections');
  // The checker also wants every job of the scan gone from the queue.
  await waitForEmptyQueue(db.pool, w);
  t.same((await fullScanVerify(db.pool, fullScanId)).filter((c) => !c.ok), [], 'the invariant checker passes');
});
