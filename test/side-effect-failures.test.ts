/**
 * Failed notifications and remediations are visible: a webhook refused by the target rules, a
 * receiver that answers 500 until the last attempt, and a quarantine move into an unsafe directory end
 * `failed` in the ledger with why; `scan status` counts the scan's side effects by status and names
 * the first failure; `dsx-connect effects` lists them; the worker logs each failure at warn level.
 * Real workers, a real receiver on loopback, a real quarantine directory.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import t from 'tap';
import { channelCreate } from '../src/db/sql/catalog.ts';
import { EICAR } from '../src/testing/fixtures.ts';
import { ROLE_TASKS, startWorker } from '../src/worker/run.ts';
import { createTestDatabase } from './helpers/db.ts';
import { apiServer, operation, token } from './helpers/graphql.ts';
import { emulator, fsScope, testConfig, waitFor, waitForScan } from './helpers/pipeline.ts';
import { MAIN, productEnv } from './helpers/processes.ts';
import { startReceiver } from './helpers/webhook-receiver.ts';

/** Runs `dsx-connect ...args` to completion without blocking this process (its workers keep running). */
function cli(env: NodeJS.ProcessEnv, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, ...args], { env: productEnv({ DSX_LOG_LEVEL: 'warn', ...env }) });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout: stdout.trim(), stderr: stderr.trim() }));
  });
}

interface LogLine {
  level: number;
  msg: string;
  side_effect_id?: number;
  action?: string;
  attempt?: number;
  err?: string;
}

t.test('a refused webhook, a receiver answering 500 and a failed move show in scan status, effects and the warn log', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const failing = (await startReceiver(t, { respond: (_req, res) => res.writeHead(500).end('nope') }))!;
  const working = (await startReceiver(t))!;
  // Group- and world-writable: the connector refuses to quarantine into it (anyone could plant a link there).
  const base = t.testdir({ share: { 'bad.com': EICAR, 'fine.txt': 'hello' }, q: {} });
  const share = path.join(base, 'share');
  const unsafe = path.join(base, 'q');
  fs.chmodSync(unsafe, 0o777);
  const scope = await fsScope(db.pool, {
    dir: share,
    name: 'share',
    settings: { quarantine_dir: unsafe },
    policy: { malicious: { remediation: 'move', notify: true } },
  });
  await channelCreate(db.pool, { name: 'ops', url: `http://127.0.0.1:${failing.port}/hook`, secret: 'a-long-enough-secret' });
  await channelCreate(db.pool, { name: 'pager', url: `http://127.0.0.1:${working.port}/hook`, secret: 'a-long-enough-secret' });
  // Only 127.0.0.1 may be reached: the channel naming localhost is refused before any connection.
  await channelCreate(db.pool, { name: 'blocked', url: `http://localhost:${working.port}/hook`, secret: 'a-long-enough-secret' });

  const logs: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) logs.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  const worker = await startWorker({
    pool: db.pool,
    config: testConfig({ webhookAllowedHosts: ['127.0.0.1'] }),
    log: pino({ level: 'warn' }, sink),
    roles: Object.keys(ROLE_TASKS),
    concurrency: 8,
    dsxaUrl: emu.url,
    pollIntervalMs: 100,
  });
  t.teardown(() => worker.stop());

  const { rows: started } = await db.pool.query<{ id: string }>(`select (dsx.start_full_scan($1, 'test')).full_scan_id as id`, [scope.id]);
  const id = Number(started[0]!.id);
  await waitForScan(db.pool, id);

  // The 500 is retried with graphile-worker's backoff (2.7 s, 7.4 s, ... over 10 attempts): once its
  // first attempt has failed, make the next one the last, as if the receiver had failed all along.
  const effectJob = async () =>
    (
      await db.pool.query<{ id: string; attempts: number; max_attempts: number }>(
        `select j.id::text, j.attempts, j.max_attempts from graphile_worker._private_jobs j
           join graphile_worker._private_tasks k on k.id = j.task_id
          where k.identifier = 'send-notification' and j.locked_at is null and j.attempts > 0`,
      )
    ).rows[0];
  await waitFor(async () => (await effectJob()) !== undefined, 'the first attempt to the failing receiver to fail');
  const job = (await effectJob())!;
  await db.pool.query('select graphile_worker.reschedule_jobs(array[$1::bigint], now(), null, $2, null)', [job.id, job.max_attempts - 1]);
  const failedCount = async () =>
    Number(
      (
        await db.pool.query(
          `select count(*) from dsx.side_effects e join dsx.scan_results r on r.id = e.scan_result_id
            where r.full_scan_id = $1 and e.status = 'failed'`,
          [id],
        )
      ).rows[0].count,
    );
  await waitFor(async () => (await failedCount()) === 3, 'three side effects to fail');
  t.equal(failing.requests.length, 2, 'the failing receiver was tried twice: the first attempt and the last');
  t.equal(working.requests.length, 1, 'the working channel got its one delivery; the refused one none');

  const env = { DATABASE_URL: db.url };
  const [text, json, failedJson, all, badStatus, unknownScan] = await Promise.all([
    cli(env, 'scan', 'status', String(id)),
    cli(env, 'scan', 'status', String(id), '--json'),
    cli(env, 'effects', '--scan', String(id), '--status', 'failed', '--json'),
    cli(env, 'effects', '--scan', String(id)),
    cli(env, 'effects', '--status', 'broken'),
    cli(env, 'effects', '--scan', '424242'),
  ]);

  const { rows: first } = await db.pool.query(
    `select e.kind, e.action, c.name as channel, e.detail from dsx.side_effects e
       join dsx.scan_results r on r.id = e.scan_result_id left join dsx.notification_channels c on c.id = e.channel_id
      where r.full_scan_id = $1 and e.status = 'failed' order by e.executed_at, e.id limit 1`,
    [id],
  );
  const f = first[0]!;
  t.not(f.channel, 'ops', 'the 500 failed last (the other two fail at their first attempt)');
  const lines = text.stdout.split('\n');
  t.equal(lines[0], `full scan ${id} of scope share: completed`);
  t.equal(lines[2], '  outcomes: clean=1 malicious=1');
  t.equal(lines[3], `  side effects: done=1 failed=3 (list them: dsx-connect effects --scan ${id})`);
  t.equal(lines[4], `  first failure: ${f.kind} ${f.action}${f.channel ? ` to channel ${f.channel}` : ''} for "bad.com": ${f.detail}`);
  t.equal(lines.length, 5);

  const status = JSON.parse(json.stdout);
  t.same(status.side_effects, { done: 1, failed: 3 });
  t.match(status.first_side_effect_failure, { kind: f.kind, action: f.action, channel: f.channel, object_identity: 'bad.com', detail: f.detail, executed_at: String });

  t.equal(failedJson.code, 0, failedJson.stderr);
  const failed = JSON.parse(failedJson.stdout) as { kind: string; action: string; channel: string | null; detail: string; status: string; object_identity: string }[];
  const byWhat = Object.fromEntries(failed.map((e) => [e.channel ?? e.action, e]));
  t.same(Object.keys(byWhat).sort(), ['blocked', 'move', 'ops']);
  t.match(byWhat.move, { kind: 'remediation', status: 'failed', object_identity: 'bad.com', detail: /^quarantine directory .* is writable by group or others \(mode 0777\)/ });
  t.match(byWhat.ops, { kind: 'notification', action: 'webhook', detail: new RegExp(`^webhook http://127\\.0\\.0\\.1:${failing.port}/hook answered HTTP 500`) });
  t.match(byWhat.blocked, { kind: 'notification', detail: /^webhook host localhost is not in DSX_WEBHOOK_ALLOWED_HOSTS/ });

  t.equal(all.code, 0, all.stderr);
  const rows = all.stdout.split('\n').map((l) => l.split('\t'));
  t.equal(rows.length, 4, 'every side effect of the scan, one line each');
  for (const r of rows) t.match(r, [/^\d{4}-\d\d-\d\dT/, /^(remediation\/move|notification\/webhook)$/, /^(done|failed)$/, '"bad.com"', /^(-|channel \w+)$/, String]);
  t.ok(rows.some((r) => r[2] === 'done' && r[4] === 'channel pager' && r[5] === 'HTTP 204'), 'the delivered one says so');
  t.equal(badStatus.code, 1);
  t.equal(badStatus.stderr, 'error: --status must be one of pending, executing, done, already_done, not_supported, skipped, failed (got "broken")');
  t.equal(unknownScan.stderr, 'error: unknown full scan id 424242');

  // The worker's log: one warn line per failure, and one for the attempt that was retried.
  const warns = logs.filter((l) => l.level === 40 && l.side_effect_id !== undefined);
  const recorded = warns.filter((l) => /recorded as failed/.test(l.msg));
  t.equal(recorded.length, 3, 'each failure is logged at warn');
  t.ok(recorded.some((l) => l.action === 'move' && /writable by group or others/.test(l.err ?? '')));
  t.ok(recorded.some((l) => l.attempt === job.max_attempts && /answered HTTP 500/.test(l.err ?? '')), 'the 500, on its last attempt');
  t.match(warns.filter((l) => /retrying/.test(l.msg)), [{ msg: 'notification webhook failed; retrying', attempt: 1, err: /answered HTTP 500/ }]);

  // The API shows the same counts to a viewer.
  const api = await apiServer(t, db.url);
  const q = await api.query(operation('full-scan-status'), { id: String(id) }, await token('viewer'));
  t.notOk(q.errors, JSON.stringify(q.errors));
  t.match(q.data.fullScanProgressByRowId, { sideEffects: { done: 1, failed: 3 }, firstSideEffectFailure: { detail: f.detail } });
});
