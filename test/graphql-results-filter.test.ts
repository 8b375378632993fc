import t from 'tap';
import { createTestDatabase } from './helpers/db.ts';
import { apiServer, operation, token } from './helpers/graphql.ts';
import { emulator, syntheticScope, waitForScan, workers } from './helpers/pipeline.ts';
import { fullScanStart } from '../src/db/sql/full-scans.ts';

const BASE = Date.parse('2026-01-01T00:00:00Z');
const at = (s: number) => new Date(BASE + s * 1000).toISOString();

t.test('scan results and objects filter by a finalized-time window, with scope, scan and outcome', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const api = await apiServer(t, db.url);
  const viewer = await token('viewer');
  const scope = await syntheticScope(db.pool, { objects: 1200 });
  const { fullScanId } = await fullScanStart(db.pool, scope.id, 'test');
  await workers(t, db.pool, { dsxaUrl: emu.url });
  const scan = await waitForScan(db.pool, fullScanId);
  t.equal(scan.finalized, 1200);
  // Spread the finalization times: the n-th result (by id) at BASE + n seconds.
  await db.pool.query(`update dsx.scan_results set finalized_at = $1::timestamptz + (id - (select min(id) from dsx.scan_results)) * interval '1 second'`, [at(0)]);
  await db.pool.query(`update dsx.objects set last_finalized_at = $1::timestamptz + (id - (select min(id) from dsx.objects)) * interval '1 second'`, [at(0)]);
  const { rows: malicious } = await db.pool.query<{ s: number }>(
    `select extract(epoch from finalized_at - $1::timestamptz)::int as s from dsx.scan_results where outcome = 'malicious' order by 1`, [at(0)]);
  t.ok(malicious.length >= 1, `${malicious.length} malicious results`);

  const results = async (vars: Record<string, unknown>) => {
    const r = await api.query(operation('scan-results'), { fullScanId, ...vars }, viewer);
    t.notOk(r.errors, JSON.stringify(r.errors));
    return r.data.allScanResults as { totalCount: number; nodes: { finalizedAt: string; outcome: string }[] };
  };
  const window = await results({ finalizedAfter: at(100), finalizedBefore: at(200) });
  t.equal(window.totalCount, 100, '[after, before): 100 of 1200');
  t.ok(window.nodes.every((n) => Date.parse(n.finalizedAt) >= Date.parse(at(100)) && Date.parse(n.finalizedAt) < Date.parse(at(200))), 'each inside the window');
  t.equal(window.nodes[0]!.finalizedAt.slice(0, 19), at(199).slice(0, 19), 'newest first: the last second of the window, not the bound itself');
  t.equal((await results({ finalizedAfter: at(1000) })).totalCount, 200, 'after alone (inclusive)');
  t.equal((await results({ finalizedBefore: at(1000) })).totalCount, 1000, 'before alone (exclusive)');
  t.equal((await results({ finalizedAfter: null, finalizedBefore: null })).totalCount, 1200, 'null bounds do not filter');
  const first = malicious[0]!.s;
  t.equal((await results({ outcome: 'malicious', finalizedAfter: at(first), finalizedBefore: at(first + 1) })).totalCount, 1, 'with outcome: the one detection of that second');
  t.equal((await results({ outcome: 'malicious', finalizedAfter: at(first + 1), finalizedBefore: at(first + 1 + 0) })).totalCount, 0, 'an empty window');

  const bad = await api.query(operation('scan-results'), { fullScanId, finalizedAfter: 'not-a-time' }, viewer);
  t.match(bad.errors, [{ message: /invalid input syntax for type timestamp with time zone: "not-a-time"/, extensions: { code: '22007' } }], 'a malformed time is refused, saying why');

  const objects = await api.query(
    `query($scopeId: BigInt!, $after: Datetime, $before: Datetime) {
       allObjects(condition: {scopeId: $scopeId, lastFinalizedAfter: $after, lastFinalizedBefore: $before}) { totalCount }
     }`,
    { scopeId: scope.id, after: at(50), before: at(60) },
    viewer,
  );
  t.same(objects.data, { allObjects: { totalCount: 10 } }, 'objects filter by their last finalization time');
});
