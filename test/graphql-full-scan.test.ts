import t from 'tap';
import { createTestDatabase } from './helpers/db.ts';
import { apiServer, operation, token, waitForListen, type GraphQLResult } from './helpers/graphql.ts';
import { emulator, getScan, queuedJobs, syntheticScope, waitForScan, workers } from './helpers/pipeline.ts';

const n = (v: unknown) => Number(v);

t.test('a full scan started by mutation streams ordered progress ending with one exact completed event', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const api = await apiServer(t, db.url);
  const operator = await token('operator');
  const scope = await syntheticScope(db.pool, { objects: 3000 });

  const started = await api.query(operation('start-full-scan'), { scopeId: scope.id }, operator);
  t.notOk(started.errors, JSON.stringify(started.errors));
  const scan = started.data.startFullScan;
  t.equal(scan.alreadyActive, false);
  const id = n(scan.fullScan.rowId);
  t.equal(scan.fullScan.status, 'queued');

  const again = await api.query(operation('start-full-scan'), { scopeId: scope.id }, operator);
  t.same(again.data.startFullScan, { alreadyActive: true, fullScan: { rowId: String(id), status: 'queued', scopeId: String(scope.id), scope: { name: scope.name } } });
  t.equal((await queuedJobs(db.pool, 'full-scan-scope')).length, 1, 'the second start enqueued nothing');

  const sub = api.subscribe(operation('full-scan-progress'), { fullScanId: id }, await token('viewer'));
  await sub.firstEvent;
  const t0 = Date.now();
  await workers(t, db.pool, { dsxaUrl: emu.url });
  const events = (await sub.done).map((e: GraphQLResult) => {
    t.notOk(e.errors, JSON.stringify(e.errors));
    return e.data.fullScanProgress;
  });
  const seconds = (Date.now() - t0) / 1000;
  const final = await getScan(db.pool, id);

  t.match(events[0], { event: 'initial', status: 'queued' }, 'the current state comes first');
  for (let i = 1; i < events.length; i++) {
    t.ok(n(events[i].discovered) >= n(events[i - 1].discovered) && n(events[i].finalized) >= n(events[i - 1].finalized), `event ${i} never goes backwards`);
  }
  const completed = events.filter((e) => e.status === 'completed');
  t.equal(completed.length, 1, 'exactly one completed event');
  const last = events.at(-1);
  t.equal(last, completed[0], 'and it is the last');
  t.match(last, { event: 'finished', status: 'completed', discovered: final.discovered, finalized: final.finalized });
  t.same(last.outcomes, {
    clean: final.clean_count, malicious: final.malicious_count, unable_to_scan: final.unable_to_scan_count,
    unsupported_type: final.unsupported_type_count, fetch_failed: final.fetch_failed_count, timeout: final.timeout_count,
    policy_blocked: final.policy_blocked_count, canceled: final.canceled_count,
  });
  t.equal(n(last.finalized), 3000);
  t.ok(events.some((e) => e.status === 'running' && n(e.finalized) > 0 && n(e.finalized) < 3000), 'progress arrives while the scan runs');
  // Throttled: about 5 progress events a second plus the status changes, however fast objects finalize.
  t.ok(events.length <= Math.ceil(seconds * 5) + 6, `${events.length} events in ${seconds.toFixed(1)} s is bounded`);

  const results = await api.query(operation('scan-results'), { fullScanId: id, outcome: 'malicious' }, await token('viewer'));
  t.notOk(results.errors, JSON.stringify(results.errors));
  t.equal(results.data.allScanResults.totalCount, final.malicious_count);
  t.ok(results.data.allScanResults.nodes.every((r: { outcome: string }) => r.outcome === 'malicious'));
});

t.test('scanResults streams detections of a scope as they are finalized', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const api = await apiServer(t, db.url);
  const scope = await syntheticScope(db.pool, { objects: 2500 });
  const seen: string[] = [];
  const sub = api.subscribe(operation('watch-detections'), { scopeId: scope.id }, await token('viewer'), (e) => {
    seen.push(e.data?.scanResults?.outcome);
  });
  await waitForListen(db.pool, `dsx_scan_results:${scope.id}`);
  const started = await api.query(operation('start-full-scan'), { scopeId: scope.id }, await token('operator'));
  await workers(t, db.pool, { dsxaUrl: emu.url });
  const scan = await waitForScan(db.pool, n(started.data.startFullScan.fullScan.rowId));
  const deadline = Date.now() + 5000;
  while (seen.length < scan.malicious_count && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.same(seen, Array(scan.malicious_count).fill('malicious'), 'one event per malicious object, nothing else');
  t.ok(scan.malicious_count >= 2);
  void sub.done.catch(() => {});
});

t.test('cancel through the API ends the progress subscription with a canceled event, in both modes', async (t) => {
  for (const mode of ['INTERRUPT', 'DRAIN'] as const) {
    t.test(mode, async (t) => {
      const db = await createTestDatabase(t);
      const emu = await emulator(t, { latencyMs: 20 });
      const api = await apiServer(t, db.url);
      const operator = await token('operator');
      const scope = await syntheticScope(db.pool, { objects: 2000 });
      const started = await api.query(operation('start-full-scan'), { scopeId: scope.id }, operator);
      const id = n(started.data.startFullScan.fullScan.rowId);
      const sub = api.subscribe(operation('full-scan-progress'), { fullScanId: id }, operator);
      await sub.firstEvent;
      await workers(t, db.pool, { dsxaUrl: emu.url });
      while (n((await getScan(db.pool, id)).finalized) < 50) await new Promise((r) => setTimeout(r, 20));
      const canceled = await api.query(operation('cancel-full-scan'), { fullScanId: id, mode }, operator);
      t.notOk(canceled.errors, JSON.stringify(canceled.errors));
      t.match(canceled.data.cancelFullScan.fullScan, { status: 'canceled', cancelMode: mode.toLowerCase() });
      const events = (await sub.done).map((e) => e.data.fullScanProgress);
      const last = events.at(-1);
      const final = await waitForScan(db.pool, id);
      t.equal(last.status, 'canceled');
      t.not(last.finishedAt, null, 'the last event is the finished state');
      t.equal(n(last.finalized), final.finalized);
      t.equal(n(last.discovered), final.discovered);
      if (mode === 'INTERRUPT') t.ok(final.canceled_count > 0, 'interrupt finalized the rest as canceled');
    });
  }
});
