/**
 * A listing that keeps failing shows: while it is retried, `scan status` (and the progress view and
 * subscription) says what failed, which attempt it was and when the next try is; a recorded page
 * clears it; after DSX_ENUMERATION_MAX_ATTEMPTS the scan fails with the reason.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import t from 'tap';
import { PROJECT_DIR } from '../src/config.ts';
import { createTestDatabase } from './helpers/db.ts';
import { emulator, syntheticScope, testConfig, waitFor, waitForScan, workers } from './helpers/pipeline.ts';
import { jobEvents } from './helpers/wait.ts';

const BIN = path.join(PROJECT_DIR, 'bin', 'dsx-connect.js');

/** Runs the CLI without blocking this process (its in-process workers keep running). */
function cli(env: NodeJS.ProcessEnv, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout: stdout.trim(), stderr: stderr.trim() }));
  });
}

async function start(pool: import('pg').Pool, scopeId: number): Promise<number> {
  const { rows } = await pool.query<{ id: string }>(`select (dsx.start_full_scan($1, 'test')).full_scan_id as id`, [scopeId]);
  return Number(rows[0]!.id);
}

t.test('a failing listing is shown with its attempt and next try, and fails the scan after the configured attempts', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const scope = await syntheticScope(db.pool, { objects: 10, settings: { faults: { list_fail_rate: 1 } } });
  const w = await workers(t, db.pool, { dsxaUrl: emu.url, config: testConfig({ enumerationMaxAttempts: 3 }) });
  const id = await start(db.pool, scope.id);
  await waitFor(async () => (await db.pool.query('select 1 from dsx.full_scans where enumeration_error is not null')).rowCount === 1, 'the first error', 30_000, jobEvents(w));

  const { rows } = await db.pool.query(
    'select status, enumeration_error, enumeration_attempt, enumeration_max_attempts, enumeration_retry_at > now() as later from dsx.full_scan_progress where id = $1',
    [id],
  );
  t.match(rows[0], { status: 'running', enumeration_error: /enumeration of page 0 failed: injected fault/, enumeration_attempt: 1, enumeration_max_attempts: 3, later: true });
  // Attempts 2 and 3 would follow about 2.7 s and 7.4 s later (graphile-worker's backoff), sooner than
  // two CLI processes start on a loaded machine: the workers stop while the CLI reads the state.
  await w.stop();
  const status = await cli({ DATABASE_URL: db.url, DSX_LOG_LEVEL: 'warn' }, 'scan', 'status', String(id));
  t.match(status.stdout, /listing failing \(attempt 1 of 3\): enumeration of page 0 failed: injected fault/, 'scan status shows the error');
  t.match(status.stdout, /next try at \d{4}-\d\d-\d\dT/, 'and when the next try is');
  const json = JSON.parse((await cli({ DATABASE_URL: db.url, DSX_LOG_LEVEL: 'warn' }, 'scan', 'status', String(id), '--json')).stdout);
  t.match(json, { status: 'running', enumeration_error: /injected fault/, enumeration_attempt: 1, enumeration_max_attempts: 3 }, 'and --json');

  await workers(t, db.pool, { dsxaUrl: emu.url, config: testConfig({ enumerationMaxAttempts: 3 }) });

  const scan = await waitForScan(db.pool, id, 30_000);
  t.equal(scan.status, 'failed', 'the third failure fails the scan');
  t.match(scan.error, /enumeration of page 0 failed: injected fault/, 'with the reason');
});

t.test('a listing that fails once and then succeeds clears the error', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const scope = await syntheticScope(db.pool, { objects: 10, settings: { faults: { fail_first_lists: 1 } } });
  await workers(t, db.pool, { dsxaUrl: emu.url });
  const id = await start(db.pool, scope.id);
  const scan = await waitForScan(db.pool, id, 30_000);
  t.match(scan, { status: 'completed', discovered: 10 });
  const { rows } = await db.pool.query('select enumeration_error, enumeration_attempt from dsx.full_scans where id = $1', [id]);
  t.same(rows[0], { enumeration_error: null, enumeration_attempt: null }, 'cleared by the page recorded after it');
  const { rows: audit } = await db.pool.query(`select count(*)::int as n from dsx.audit_log where action = 'full_scan.enumeration_error'`);
  t.equal(audit[0]!.n, 1, 'the error stays in the audit log');
});
