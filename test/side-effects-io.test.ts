/**
 * Side effects hold nothing while they wait on the outside world: claim (commit), perform, record
 * (commit). No transaction is open while a webhook is in flight; a crash between delivery and record
 * is covered by the claim (the same job continues it, the receiver gets the same idempotency key); a
 * duplicate job leaves a claimed effect to its holder; and a burst of detections aimed at a receiver
 * that answers after 5 s does not slow finalization down (side effects run in a lane of their own).
 */
import http from 'node:http';
import type net from 'node:net';
import { once } from 'node:events';
import t, { type Test } from 'tap';
import { channelCreate } from '../src/db/sql/catalog.ts';
import { EICAR } from '../src/testing/fixtures.ts';
import { createTestDatabase } from './helpers/db.ts';
import { emulator, fsScope, queuedJobs, Stepper, syntheticScope, testConfig, waitForScan, workers } from './helpers/pipeline.ts';

interface Delivery {
  key: string;
  res: http.ServerResponse;
}

/** A webhook receiver on loopback; `hold` keeps each request open until released (or answers after `delayMs`). */
async function receiver(t: Test, opts: { hold?: boolean; delayMs?: number } = {}) {
  const deliveries: Delivery[] = [];
  const arrived = new EventTarget();
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      deliveries.push({ key: String(req.headers['x-dsx-idempotency-key']), res });
      arrived.dispatchEvent(new Event('delivery'));
      if (opts.hold) return;
      const timer = setTimeout(() => res.writeHead(204).end(), opts.delayMs ?? 0);
      res.on('close', () => clearTimeout(timer));
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(async () => {
    const closed = new Promise<void>((r) => server.close(() => r()));
    for (const s of sockets) s.destroy();
    await closed;
  });
  return {
    url: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/hook`,
    deliveries,
    next: () => new Promise<void>((r) => arrived.addEventListener('delivery', () => r(), { once: true })),
  };
}

/** One EICAR file under a scope whose policy notifies a channel to `url`; the scan and finalize jobs run. */
async function detection(t: Test, url: string) {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const scope = await fsScope(db.pool, { dir: t.testdir({ 'bad.com': EICAR }), policy: { malicious: { remediation: 'none', notify: true } } });
  await channelCreate(db.pool, { name: 'ops', url, secret: 'a-long-enough-secret' });
  await db.pool.query('select dsx.start_full_scan($1, $2)', [scope.id, 'test']);
  const stepper = new Stepper(db.pool, { dsxaUrl: emu.url });
  for (const task of ['full-scan-scope', 'enumerate-scope-page', 'scan-object', 'finalize-scan-object']) await stepper.drain(task);
  const [job] = await queuedJobs(db.pool, 'send-notification');
  return { db, stepper, job: job! };
}

t.test('no transaction is open while a webhook is in flight; the claim is committed before it', async (t) => {
  const rcv = await receiver(t, { hold: true });
  const { db, stepper, job } = await detection(t, rcv.url);
  const arrived = rcv.next();
  const running = stepper.run(job);
  await arrived;
  const { rows: open } = await db.pool.query<{ n: number }>(
    `select count(*)::int as n from pg_stat_activity where datname = current_database() and state like 'idle in transaction%'`,
  );
  t.equal(open[0]!.n, 0, 'no session of the database is idle in a transaction during the delivery');
  const { rows: claimed } = await db.pool.query('select status, claimed_by_job::text as job from dsx.side_effects');
  t.same(claimed, [{ status: 'executing', job: job.id }], 'the claim is visible to others: committed');
  rcv.deliveries[0]!.res.writeHead(204).end();
  await running;
  const { rows: done } = await db.pool.query('select status, attempts from dsx.side_effects');
  t.same(done, [{ status: 'done', attempts: 1 }], 'recorded once it answered');
});

t.test('a crash between delivery and record: the same job continues its claim, the receiver can drop the repeat', async (t) => {
  const rcv = await receiver(t);
  const { db, stepper, job } = await detection(t, rcv.url);
  let crashes = 1;
  stepper.ctx.hooks.sideEffects = {
    afterPerform: () => {
      if (crashes-- > 0) throw new Error('simulated crash after the delivery, before the record');
    },
  };
  await t.rejects(stepper.run(job), /simulated crash/);
  t.equal(rcv.deliveries.length, 1, 'delivered once');
  t.same((await db.pool.query('select status from dsx.side_effects')).rows, [{ status: 'executing' }], 'not recorded');

  // A duplicate job for the same decision (another job row) leaves the claim to its holder, which still exists.
  const { rows: dup } = await db.pool.query<{ id: string }>(
    `select (graphile_worker.add_job('send-notification', $1::json, job_key := 'dup-of-' || $2)).id::text as id`,
    [JSON.stringify(job.payload), job.id],
  );
  await stepper.run({ ...job, id: dup[0]!.id });
  t.equal(rcv.deliveries.length, 1, 'the duplicate job delivered nothing');

  await stepper.run(job); // the retry of the crashed job (same job id)
  t.equal(rcv.deliveries.length, 2, 'the retry delivers again');
  t.equal(rcv.deliveries[1]!.key, rcv.deliveries[0]!.key, 'with the same X-DSX-Idempotency-Key');
  const { rows } = await db.pool.query('select status, attempts from dsx.side_effects');
  t.same(rows, [{ status: 'done', attempts: 2 }], 'recorded once, after two attempts');
  const { rows: audit } = await db.pool.query(`select count(*)::int as n from dsx.audit_log where action like 'notification.%'`);
  t.equal(audit[0]!.n, 1, 'one audit entry for the execution');
  await stepper.run(job);
  t.equal(rcv.deliveries.length, 2, 'a job delivered again after the record does nothing');
});

/** Finalized objects per second between the first and the last finalization of the scan. */
async function finalizeRate(t: Test, delayMs: number, objects: number): Promise<number> {
  const rcv = await receiver(t, { delayMs });
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const scope = await syntheticScope(db.pool, { objects, settings: { eicar_every: 1 } });
  await db.pool.query(`select dsx.set_scope_policy($1, '{"malicious": {"remediation": "none", "notify": true}}')`, [scope.id]);
  await channelCreate(db.pool, { name: 'ops', url: rcv.url, secret: 'a-long-enough-secret' });
  await workers(t, db.pool, { dsxaUrl: emu.url, concurrency: 16, config: testConfig({ pageSize: 200 }) });
  const { rows } = await db.pool.query<{ id: string }>(`select (dsx.start_full_scan($1, 'test')).full_scan_id as id`, [scope.id]);
  const scan = await waitForScan(db.pool, Number(rows[0]!.id), 120_000);
  t.equal(scan.malicious_count, objects, `all ${objects} objects finalized as detections`);
  const { rows: r } = await db.pool.query<{ s: number }>(
    `select extract(epoch from max(finalized_at) - min(finalized_at))::float8 as s from dsx.scan_results where full_scan_id = $1`,
    [scan.id],
  );
  return objects / Math.max(r[0]!.s, 0.001);
}

t.test('a receiver that answers after 5 s does not slow finalization of a 1,000-detection burst', async (t) => {
  // A stall (every worker slot waiting on the receiver, or the pool held by open transactions) shows
  // as a ratio near 0 in every round. Other processes on a shared 2-core machine only slow a run, and
  // can slow the slow receiver's run more than the fast one's: a round below half is measured again,
  // both runs, up to three rounds.
  const ratios: number[] = [];
  for (let round = 1; round <= 3 && !(ratios.at(-1)! >= 0.5); round++) {
    await t.test(`round ${round}`, async (t) => {
      const fast = await finalizeRate(t, 0, 1000);
      const slow = await finalizeRate(t, 5000, 1000);
      ratios.push(slow / fast);
      t.comment(`finalized/s: fast receiver ${fast.toFixed(0)}, slow receiver ${slow.toFixed(0)}, ratio ${(slow / fast).toFixed(2)}`);
    });
  }
  const best = Math.max(...ratios);
  t.ok(best >= 0.5, `finalization at ${best.toFixed(2)} of its rate with a fast receiver (>= 0.5; rounds: ${ratios.map((r) => r.toFixed(2)).join(', ')})`);
});
