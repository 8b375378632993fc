/**
 * Property tests (fast-check) of the two trust boundaries that take arbitrary input:
 * - job payloads: every parser refuses a wrong payload with InvalidPayloadError naming the field, and a
 *   real task (through the Stepper, and through graphile-worker itself) fails on it changing no table;
 * - object identities: whatever string a job, a cursor or a scope root carries, the filesystem
 *   connector either stays inside the integration root or refuses it; files outside are never read,
 *   listed, moved or deleted.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import type pg from 'pg';
import t, { type Test } from 'tap';
import { z } from 'zod';
import { FilesystemConnector } from '../src/connectors/filesystem/index.ts';
import { bytesFromName, isWithin, nameFromBytes, normalizeRelativePath } from '../src/connectors/identity.ts';
import { ConnectorError } from '../src/connectors/types.ts';
import { fullScanStart } from '../src/db/sql/full-scans.ts';
import { envelopeSchema, InvalidPayloadError, JOB_BODIES, NewerSchemaVersionError, parseJob, TASKS, type TaskName } from '../src/jobs/envelope.ts';
import { createTestDatabase } from './helpers/db.ts';
import { emulator, queuedJobs, Stepper, syntheticScope, waitFor, waitForEmptyQueue, workers } from './helpers/pipeline.ts';
import { jobEvents } from './helpers/wait.ts';
import { seedFastCheck } from './helpers/seed.ts';

// Every property of this file draws from one seed (DSX_TEST_SEED, else a fresh one), printed on failure.
seedFastCheck();

const RUNS = Number(process.env.DSX_PROPERTY_RUNS ?? 200);

// ---------------------------------------------------------------------------------------------------
// Job payloads
// ---------------------------------------------------------------------------------------------------

const BODY_SCHEMAS: Record<TaskName, z.ZodObject> = JOB_BODIES;
const TASK_NAMES = Object.values(TASKS);

const uuid = fc.uuid({ version: 4 });
const id = fc.oneof(fc.integer({ min: 1, max: 2 ** 40 }), fc.integer({ min: 1, max: 1e12 }).map(String));
const text = fc.string({ unit: 'binary', minLength: 1, maxLength: 60 });
const nullable = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: null });

function validBody(task: TaskName): fc.Arbitrary<Record<string, unknown>> {
  switch (task) {
    case TASKS.fullScanScope:
      return fc.record({ full_scan_id: id });
    case TASKS.enumerateScopePage:
      return fc.record({ full_scan_id: id, page_no: fc.nat(), cursor: nullable(text) });
    case TASKS.scanObject:
    case TASKS.monitorScanObject:
      return fc.record({ size: nullable(fc.nat()), etag: nullable(text), mtime: nullable(text) });
    case TASKS.finalizeScanObject:
    case TASKS.monitorFinalizeScanObject:
      return fc.record({
        result: fc.oneof(
          fc.record({ kind: fc.constant('verdict'), http_status: fc.integer({ min: 100, max: 599 }), response: fc.dictionary(text, fc.jsonValue(), { maxKeys: 4 }) }),
          fc.record({ kind: fc.constant('failure'), stage: fc.constantFrom('fetch', 'scanner', 'policy', 'cancel'), failure: text, message: fc.string() }),
        ),
        attempts: fc.nat(),
        fetch_ms: nullable(fc.nat()),
        scan_ms: nullable(fc.nat()),
        size: nullable(fc.nat()),
        etag: nullable(text),
        mtime: nullable(text),
      });
    case TASKS.monitorEventIngest:
      return fc.record({ event_ids: fc.array(id, { minLength: 1, maxLength: 5 }), trailing: fc.boolean() });
    default:
      return fc.record({
        side_effect_id: id,
        action: fc.constantFrom('tag', 'move', 'delete', 'webhook'),
        outcome: fc.string(),
        reason: nullable(fc.string()),
        scan_result_id: id,
        channel_id: nullable(id),
      });
  }
}

function validPayload(task: TaskName): fc.Arbitrary<Record<string, unknown>> {
  return fc.record({
    schema_version: fc.constant(1),
    job_type: fc.constant(task),
    job_id: uuid,
    correlation_id: uuid,
    root_job_id: uuid,
    parent_job_id: nullable(uuid),
    idempotency_key: fc.string({ unit: 'binary', minLength: 1, maxLength: 200 }),
    source_type: fc.constantFrom('full_scan', 'monitor', 'manual'),
    source_entity_id: text,
    integration_id: id,
    scope_id: id,
    object_identity: nullable(fc.string({ unit: 'binary', minLength: 1, maxLength: 300 })),
    requested_by: text,
    created_at: fc.date({ min: new Date(0), max: new Date(4e12), noInvalidDate: true }).map((d) => d.toISOString()),
    body: validBody(task),
  });
}

/** Anything at all, including values JSON cannot carry (a payload is `unknown` until parsed). */
const anything = fc.anything({
  maxDepth: 3,
  withBigInt: true,
  withDate: true,
  withMap: true,
  withSet: true,
  withNullPrototype: true,
  withObjectString: true,
  withBoxedValues: true,
  withTypedArray: true,
  withSparseArray: true,
});

/** The schema of one top-level or body field, to pick values it refuses. */
function fieldSchema(task: TaskName, field: string): z.ZodType {
  if (field.startsWith('body.')) return BODY_SCHEMAS[task].shape[field.slice(5)] as z.ZodType;
  if (field === 'body') return BODY_SCHEMAS[task];
  if (field === 'job_type') return z.literal(task);
  return envelopeSchema.shape[field as keyof typeof envelopeSchema.shape];
}

function fieldsOf(task: TaskName): string[] {
  return [...Object.keys(envelopeSchema.shape), 'body', ...Object.keys(BODY_SCHEMAS[task].shape).map((k) => `body.${k}`)];
}

/** A valid payload with one field deleted or set to a value that field's schema refuses. */
interface Mutation {
  task: TaskName;
  field: string;
  kind: 'delete' | 'replace';
  payload: Record<string, unknown>;
}

function mutated(tasks: readonly TaskName[] = TASK_NAMES): fc.Arbitrary<Mutation> {
  return fc
    .constantFrom(...tasks)
    .chain((task) => fc.tuple(fc.constant(task), validPayload(task), fc.constantFrom(...fieldsOf(task)), fc.boolean()))
    // An optional field (absent from older payloads) cannot be refused by deleting it: replace it instead.
    .map(([task, payload, field, remove]) => [task, payload, field, remove && !fieldSchema(task, field).safeParse(undefined).success] as const)
    .chain(([task, payload, field, remove]) =>
      (remove ? fc.constant(undefined) : anything.filter((v) => !fieldSchema(task, field).safeParse(v).success)).map((value) => {
        const copy = { ...payload, body: { ...(payload.body as object) } } as Record<string, any>;
        const [holder, key] = field.startsWith('body.') ? [copy.body, field.slice(5)] : [copy, field];
        if (remove) delete holder[key];
        else holder[key] = value;
        return { task, field, kind: remove ? 'delete' : 'replace', payload: copy } as Mutation;
      }),
    );
}

/** The property every refusal must have: InvalidPayloadError, naming the task and the field, bounded. */
function refusal(m: Mutation, err: unknown): boolean {
  // A schema_version above this worker's is a rolling deploy, not a bad payload: it is retried.
  if (err instanceof NewerSchemaVersionError && m.field === 'schema_version') return true;
  if (!(err instanceof InvalidPayloadError)) throw new Error(`expected InvalidPayloadError, got ${String(err)}`);
  if (!err.message.startsWith(`invalid ${m.task} payload: `)) throw new Error(`message does not name the task: ${err.message}`);
  if (!err.message.includes(`${m.field}`)) throw new Error(`message does not name ${m.field}: ${err.message}`);
  if (err.message.length > 2000) throw new Error(`message of ${err.message.length} characters`);
  return true;
}

t.test('every valid payload parses (so the refusals below are about the mutation)', async (t) => {
  fc.assert(
    fc.property(fc.constantFrom(...TASK_NAMES).chain((task) => fc.tuple(fc.constant(task), validPayload(task))), ([task, payload]) => {
      const job = parseJob(task, payload);
      return job.job_type === task && job.job_id === payload.job_id;
    }),
    { numRuns: RUNS },
  );
  t.pass(`${RUNS} valid payloads parsed`);
});

t.test('a payload with one bad or missing field is refused with InvalidPayloadError naming that field', async (t) => {
  fc.assert(
    fc.property(mutated(), (m) => {
      try {
        parseJob(m.task, m.payload);
      } catch (err) {
        return refusal(m, err);
      }
      throw new Error(`accepted a payload with ${m.kind}d ${m.field}`);
    }),
    { numRuns: RUNS * 3 },
  );
  t.pass(`${RUNS * 3} mutated payloads refused`);
});

t.test('an arbitrary value as payload is refused with InvalidPayloadError, never another error', async (t) => {
  fc.assert(
    fc.property(fc.constantFrom(...TASK_NAMES), fc.oneof(anything, fc.dictionary(fc.string(), anything)), (task, payload) => {
      try {
        parseJob(task, payload);
      } catch (err) {
        if (!(err instanceof InvalidPayloadError)) throw err;
        return err.message.startsWith(`invalid ${task} payload: `);
      }
      return false;
    }),
    { numRuns: RUNS },
  );
  t.pass(`${RUNS} arbitrary payloads refused`);
});

/** Every row of every table a task could touch, as one comparable value. */
/**
 * A digest of every table of dsx and dsx_private (and of the queue): what a refused job must not change.
 * Left out: worker liveness, and where refused jobs are recorded (dsx.invalid_jobs, and their
 * `job.invalid_payload` entries of the audit log, checked on their own).
 */
async function snapshot(pool: pg.Pool, opts: { jobs: boolean }): Promise<Record<string, string>> {
  const { rows: tables } = await pool.query<{ name: string }>(
    `select format('%I.%I', table_schema, table_name) as name from information_schema.tables
      where table_schema in ('dsx', 'dsx_private') and table_type = 'BASE TABLE'
        and table_name not in ('worker_heartbeats', 'scanner_status', 'invalid_jobs', 'audit_log') order by 1`,
  );
  const names = tables.map((r) => r.name);
  if (opts.jobs) names.push('graphile_worker._private_jobs');
  const out: Record<string, string> = {};
  const { rows: audit } = await pool.query(`select count(*)::int as n from dsx.audit_log where action <> 'job.invalid_payload'`);
  out['dsx.audit_log (other than job.invalid_payload)'] = String(audit[0].n);
  for (const name of names) {
    const { rows } = await pool.query(`select count(*)::int as n, md5(coalesce(string_agg(t::text, '|' order by t::text), '')) as h from ${name} t`);
    out[name] = `${rows[0].n}:${rows[0].h}`;
  }
  return out;
}

/** A half-done scan: every kind of job queued, so a valid payload would change something. */
async function halfDoneScan(t: Test) {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  await db.pool.query(`select dsx.create_notification_channel('ops', 'https://hooks.example/dsx', 'webhook-secret')`);
  const scope = await syntheticScope(db.pool, { objects: 4, settings: { eicar_every: 2 } });
  await db.pool.query(`select dsx.set_scope_policy($1, '{"malicious": {"remediation": "tag", "notify": true}}')`, [scope.id]);
  const stepper = new Stepper(db.pool, { dsxaUrl: emu.url });
  const { fullScanId } = await fullScanStart(db.pool, scope.id, 'tester');
  const payloads = new Map<string, unknown>();
  const keep = async (task: string) => {
    const [job] = await queuedJobs(db.pool, task);
    payloads.set(task, job!.payload);
  };
  await keep('full-scan-scope');
  await stepper.drain('full-scan-scope');
  await keep('enumerate-scope-page');
  await stepper.drain('enumerate-scope-page');
  const scans = await queuedJobs(db.pool, 'scan-object');
  payloads.set('scan-object', scans[0]!.payload);
  for (const job of scans.slice(1)) {
    await stepper.run(job);
    await stepper.complete(job);
  }
  const finalizes = await queuedJobs(db.pool, 'finalize-scan-object');
  // Finalize jobs are batch jobs (an array of envelopes); scans ran one by one, so each holds one.
  payloads.set('finalize-scan-object', (finalizes[0]!.payload as unknown[])[0]);
  for (const job of finalizes.slice(1)) {
    await stepper.run(job);
    await stepper.complete(job);
  }
  await keep('apply-remediation');
  await keep('send-notification');
  await db.pool.query(`select dsx.set_scope_monitor($1, true)`, [scope.id]);
  await db.pool.query(
    `select dsx.accept_monitor_events($1, 'generic', '[{"event_type": "modified", "object_identity": "obj-000000001"}, {"event_type": "modified", "object_identity": "obj-000000003"}]')`,
    [scope.integration_id],
  );
  await keep('monitor-event-ingest');
  // The monitor lane's scan and finalize jobs: the ingest queues one scan per event; one of them runs.
  await stepper.drain('monitor-event-ingest');
  const monitorScans = await queuedJobs(db.pool, 'monitor-scan-object');
  payloads.set('monitor-scan-object', monitorScans[0]!.payload);
  await stepper.run(monitorScans[1]!);
  await stepper.complete(monitorScans[1]!);
  payloads.set('monitor-finalize-scan-object', ((await queuedJobs(db.pool, 'monitor-finalize-scan-object'))[0]!.payload as unknown[])[0]);
  return { db, emu, stepper, fullScanId, payloads, scans };
}

t.test('running a task with a mutated real payload fails clearly and changes no table', async (t) => {
  const { db, stepper, payloads, scans } = await halfDoneScan(t);
  t.equal(payloads.size, TASK_NAMES.length, 'a real payload of every job type');
  const before = await snapshot(db.pool, { jobs: true });
  const realMutation = fc
    .constantFrom(...TASK_NAMES)
    .chain((task) => fc.tuple(fc.constant(task), fc.constantFrom(...fieldsOf(task)), fc.boolean()))
    .map(([task, field, remove]) => [task, field, remove && !fieldSchema(task, field).safeParse(undefined).success] as const)
    .chain(([task, field, remove]) =>
      (remove ? fc.constant(undefined) : anything.filter((v) => !fieldSchema(task, field).safeParse(v).success)).map((value) => {
        const real = payloads.get(task) as Record<string, any>;
        const copy = { ...real, body: { ...real.body } };
        const [holder, key] = field.startsWith('body.') ? [copy.body, field.slice(5)] : [copy, field];
        if (remove) delete holder[key];
        else holder[key] = value;
        return { task, field, kind: remove ? 'delete' : 'replace', payload: copy } as Mutation;
      }),
    );
  let runs = 0;
  await fc.assert(
    fc.asyncProperty(realMutation, async (m) => {
      runs++;
      const recordedBefore = (await db.pool.query<{ n: number }>('select count(*)::int as n from dsx.invalid_jobs')).rows[0]!.n;
      try {
        await stepper.run({ id: '0', task: m.task, payload: m.payload, attempts: 1, max_attempts: 25 });
      } catch (err) {
        // Only a newer schema version is thrown (retried until an upgraded worker takes it).
        if (err instanceof NewerSchemaVersionError && m.field === 'schema_version') return true;
        throw new Error(`task ${m.task} with ${m.kind}d ${m.field} threw instead of recording the job: ${String(err)}`);
      }
      const { rows } = await db.pool.query<{ task: string; error: string }>('select task, error from dsx.invalid_jobs order by id desc limit 1');
      if ((await db.pool.query<{ n: number }>('select count(*)::int as n from dsx.invalid_jobs')).rows[0]!.n !== recordedBefore + 1) {
        throw new Error(`task ${m.task} ran with ${m.kind}d ${m.field}`);
      }
      return refusal(m, new InvalidPayloadError(rows[0]!.task, rows[0]!.error.replace(`invalid ${rows[0]!.task} payload: `, '')));
    }),
    { numRuns: Math.ceil(RUNS / 4) },
  );
  t.same(await snapshot(db.pool, { jobs: true }), before, `${runs} refused jobs changed no table and no job`);

  // Control: the snapshot does see what a valid job changes.
  await stepper.run(scans[0]!);
  t.not(JSON.stringify(await snapshot(db.pool, { jobs: true })), JSON.stringify(before), 'a valid job changes the snapshot');
});

t.test('graphile-worker runs jobs with bad payloads: each is recorded with the field named and completed, not retried; nothing else changes', async (t) => {
  const { db, emu, payloads } = await halfDoneScan(t);
  const before = await snapshot(db.pool, { jobs: false });
  // Stop the jobs the half-done scan left queued from running: only the bad ones may run.
  await db.pool.query(`update graphile_worker._private_jobs set run_at = now() + interval '1 day'`);
  // What a job row can hold is JSON: keep the mutations that are still refused, for their field, as JSON.
  const asJson = (v: unknown) => JSON.parse(JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? 'big' : x)) ?? 'null');
  const stillRefused = (m: Mutation) => {
    try {
      parseJob(m.task, m.payload);
      return false;
    } catch (err) {
      return (err as Error).message.includes(m.field);
    }
  };
  const expected = fc
    .sample(mutated().map((m) => ({ ...m, payload: asJson(m.payload) })).filter(stillRefused), { numRuns: 18, seed: 4711 });
  // Hand-made ones too: a real payload with a hostile identity, an empty body, JSON null.
  const scanReal = payloads.get('scan-object') as Record<string, unknown>;
  expected.push(
    { task: 'scan-object', field: 'object_identity', kind: 'replace', payload: { ...scanReal, object_identity: 'x'.repeat(9000) } },
    { task: 'enumerate-scope-page', field: 'body', kind: 'replace', payload: { ...(payloads.get('enumerate-scope-page') as object), body: null } },
  );
  const { rows: ids } = await db.pool.query<{ id: string }>(
    `select (graphile_worker.add_job(x->>'task', (x->'payload')::json, max_attempts := 1)).id::text
       from jsonb_array_elements($1::jsonb) x`,
    [JSON.stringify(expected.map((m) => ({ task: m.task, payload: m.payload })))],
  );
  const w = await workers(t, db.pool, { dsxaUrl: emu.url });
  const recorded = async () =>
    (await db.pool.query(`select worker_job_id::text as id, error from dsx.invalid_jobs where worker_job_id = any($1::bigint[])`, [ids.map((r) => r.id)])).rows;
  // Each bad job is recorded in the job's own transaction: re-checked as the worker's jobs complete.
  await waitFor(async () => (await recorded()).length === expected.length, 'every bad job to be recorded', 30_000, jobEvents(w));
  await waitForEmptyQueue(db.pool, w, 30_000, (j) => !ids.some((r) => r.id === j.id)); // the completions commit a moment later
  const errors = await recorded();
  expected.forEach((m, i) => {
    const error = String(errors.find((e) => e.id === ids[i]!.id)?.error);
    t.ok(error.startsWith(`invalid ${m.task} payload: `) && error.includes(m.field), `${m.task}, ${m.kind} ${m.field}: ${error}`);
  });
  const { rows: left } = await db.pool.query(`select count(*)::int as n from graphile_worker._private_jobs where id = any($1::bigint[])`, [ids.map((r) => r.id)]);
  t.equal(left[0].n, 0, 'each completed: none left to retry');
  t.same(await snapshot(db.pool, { jobs: false }), before, 'no other dsx or dsx_private table changed');
});

// ---------------------------------------------------------------------------------------------------
// Object identities
// ---------------------------------------------------------------------------------------------------

const SEGMENTS = [
  '..', '.', '', 'a', 'b', 'file.txt', 'root', 'root-evil', 'outside.txt', 'link-out', 'link-up', 'link-file-out', 'self',
  '..%2f', '%2e%2e', '%2e%2e%2f', '..\\', '\\..', '..\\..', 'a\\..\\..', '\u2025', '\uFF0E\uFF0E', '\u002e\u002e\u200b',
  '\0', 'x\0y', ' ', '..\n', '\uF7AE\uF7AE', '\uF7AF', '\uF7EF\uF7BF\uF7BD', '~', '$HOME', '%00',
];

/** Identities built to probe escapes, mixed with arbitrary strings. */
const hostileIdentity: fc.Arbitrary<string> = fc.oneof(
  fc.array(fc.constantFrom(...SEGMENTS), { minLength: 1, maxLength: 8 }).chain((parts) =>
    fc.tuple(fc.constantFrom('', '/', './', '//', '\\'), fc.constantFrom('/', '\\', '//')).map(([lead, sep]) => lead + parts.join(sep)),
  ),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.webPath(),
  fc.constantFrom('x'.repeat(5000), `${'a/'.repeat(2100)}x`, `${'../'.repeat(50)}etc/passwd`),
);

interface Layout {
  base: string;
  root: string;
  realRoot: string;
  outside: string[];
  secret: string;
}

/** base/root (the integration) with files and symlinks; base/outside.txt, base/root-evil/... outside. */
function layout(t: Test): Layout {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-prop-'));
  t.teardown(() => fs.rmSync(base, { recursive: true, force: true }));
  const secret = `OUTSIDE-${process.pid}-${Date.now()}`;
  const root = path.join(base, 'root');
  fs.mkdirSync(path.join(root, 'a', 'b'), { recursive: true });
  fs.mkdirSync(path.join(base, 'root-evil'));
  for (const rel of ['file.txt', 'a/file.txt', 'a/b/file.txt', 'a/..%2f', '\\..', '%2e%2e']) fs.writeFileSync(path.join(root, rel), `inside ${rel}`);
  fs.writeFileSync(Buffer.from(`${root}/bad-\xff`, 'latin1'), 'inside bad-ff');
  const outside = [path.join(base, 'outside.txt'), path.join(base, 'root-evil', 'file.txt'), path.join(base, 'root-evil', 'outside.txt')];
  for (const p of outside) fs.writeFileSync(p, secret);
  fs.symlinkSync(base, path.join(root, 'link-out'));
  fs.symlinkSync('..', path.join(root, 'link-up'));
  fs.symlinkSync(outside[0]!, path.join(root, 'link-file-out'));
  fs.symlinkSync('.', path.join(root, 'self'));
  return { base, root, realRoot: fs.realpathSync(root), outside, secret };
}

function outsideIntact(l: Layout): boolean {
  return l.outside.every((p) => fs.existsSync(p) && fs.readFileSync(p, 'utf8') === l.secret) && fs.readdirSync(l.base).sort().join() === 'outside.txt,root,root-evil';
}

/** True when the identity's real file lies inside the root (for identities an operation accepted). */
function resolvesInside(l: Layout, identity: string): boolean {
  const abs = Buffer.concat([Buffer.from(`${l.root}/`), bytesFromName(normalizeRelativePath(identity))]);
  let real: string;
  try {
    real = fs.realpathSync(abs);
  } catch {
    return true; // it does not exist (any more): nothing outside was reached through it
  }
  return real === l.realRoot || real.startsWith(`${l.realRoot}/`);
}

t.test('normalizeRelativePath: canonical, idempotent, and never above the root', async (t) => {
  fc.assert(
    fc.property(hostileIdentity, (input) => {
      let out: string;
      try {
        out = normalizeRelativePath(input);
      } catch (err) {
        return err instanceof ConnectorError && (err.kind === 'escape' || err.kind === 'invalid');
      }
      const segments = out === '' ? [] : out.split('/');
      return (
        !out.startsWith('/') &&
        !out.includes('\0') &&
        segments.every((s) => s !== '' && s !== '.' && s !== '..') &&
        normalizeRelativePath(out) === out &&
        isWithin('', out) &&
        path.resolve('/r', out).startsWith('/r')
      );
    }),
    { numRuns: RUNS * 5 },
  );
  t.pass();
});

t.test('file names as bytes: identities round-trip, and escapes never create separators or dots', async (t) => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      const name = nameFromBytes(bytes);
      const count = (buf: Uint8Array, byte: number) => buf.reduce((n, x) => n + (x === byte ? 1 : 0), 0);
      return (
        Buffer.compare(bytesFromName(name), Buffer.from(bytes)) === 0 &&
        [...name].filter((c) => c === '/').length === count(bytes, 0x2f) &&
        [...name].filter((c) => c === '.').length === count(bytes, 0x2e) &&
        [...name].filter((c) => c === '\0').length === count(bytes, 0)
      );
    }),
    { numRuns: RUNS * 5 },
  );
  fc.assert(
    fc.property(fc.string({ unit: 'grapheme', maxLength: 30 }), (s) => /[\uF780-\uF7FF]/.test(s) || nameFromBytes(Buffer.from(s, 'utf8')) === s),
    { numRuns: RUNS * 2 },
  );
  t.pass();
});

t.test('open, stat, remove and quarantine of arbitrary identities stay inside the root or refuse', async (t) => {
  const l = layout(t);
  // The quarantine is outside the share (and outside l.base, whose listing outsideIntact checks).
  const q = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-prop-q-'));
  t.teardown(() => fs.rmSync(q, { recursive: true, force: true }));
  const c = new FilesystemConnector({ root: l.root, quarantineDir: path.join(q, 'quarantine') });
  const kinds = new Map<string, number>();
  await fc.assert(
    fc.asyncProperty(hostileIdentity, fc.constantFrom('open', 'stat', 'remove', 'quarantine'), async (identity, op) => {
      try {
        if (op === 'open') {
          const o = await c.open(identity);
          const chunks: Buffer[] = [];
          for await (const chunk of o.stream) chunks.push(chunk as Buffer);
          const content = Buffer.concat(chunks).toString('utf8');
          if (content.includes(l.secret)) throw new Error(`open(${JSON.stringify(identity)}) read a file outside the root`);
        } else if (op === 'stat') {
          const info = await c.stat(identity);
          if (info && normalizeRelativePath(info.identity) !== info.identity) throw new Error('stat returned a non-canonical identity');
        } else if (op === 'remove') {
          await c.remove(identity);
        } else {
          await c.quarantine(identity);
        }
        if (!resolvesInside(l, identity)) throw new Error(`${op}(${JSON.stringify(identity)}) accepted an identity resolving outside`);
        kinds.set('accepted', (kinds.get('accepted') ?? 0) + 1);
      } catch (err) {
        if (!(err instanceof ConnectorError)) throw err;
        kinds.set(err.kind, (kinds.get(err.kind) ?? 0) + 1);
      }
      if (!outsideIntact(l)) throw new Error(`${op}(${JSON.stringify(identity)}) changed something outside the root`);
      return true;
    }),
    { numRuns: RUNS * 2 },
  );
  t.comment(`outcomes: ${JSON.stringify(Object.fromEntries(kinds))}`);
  t.ok((kinds.get('escape') ?? 0) > 0, 'escapes were attempted and refused');
  t.notOk(kinds.has('transient'), 'no refusal of a bad identity is "transient" (it would be retried for nothing)');
  t.ok(outsideIntact(l), 'every file outside the root is untouched');
});

t.test('listing with arbitrary scope roots and cursors returns only identities inside the root', async (t) => {
  const l = layout(t);
  const c = new FilesystemConnector({ root: l.root });
  const cursor = fc.oneof(
    fc.constant(null),
    hostileIdentity.map((after) => JSON.stringify({ after })),
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.jsonValue().map((v) => JSON.stringify(v)),
  );
  await fc.assert(
    fc.asyncProperty(fc.oneof(fc.constantFrom('', 'a', 'link-out', 'link-up', 'self', '..'), hostileIdentity), cursor, async (scope, after) => {
      let page;
      try {
        page = await c.listPage(scope, after, 50);
      } catch (err) {
        if (err instanceof ConnectorError) return true;
        throw err;
      }
      for (const o of page.objects) {
        if (!resolvesInside(l, o.identity)) throw new Error(`listed ${JSON.stringify(o.identity)}, outside the root`);
        if (!isWithin(normalizeRelativePath(scope), o.identity)) throw new Error(`listed ${JSON.stringify(o.identity)} outside scope ${JSON.stringify(scope)}`);
      }
      return true;
    }),
    { numRuns: RUNS },
  );
  t.ok(outsideIntact(l));
});
