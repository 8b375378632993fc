/**
 * The README runs as written. Every ```graphql block is run operation by operation, in README order,
 * against the real API server (HTTP; subscriptions over graphql-ws), and every ```sql block through
 * `dsx-connect psql` with ON_ERROR_STOP, on a database holding what the README's story has made by
 * then: the demo integration and scope (id 1) with its completed full scan 1 and the monitored drop of
 * dropped.com, an API token, and then whatever the GraphQL examples create (integration, scope and
 * full scan 2, with a quarantined detection). The one placeholder replaced is `/srv/share` (a
 * temporary directory); every other name and id in the examples must be one this data provides. A
 * failing example is reported with its README line.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import WebSocket from 'ws';
import { createClient } from 'graphql-ws';
import { getLocation, Kind, parse, type OperationDefinitionNode } from 'postgraphile/graphql';
import { EICAR_TEST_STRING } from '../src/connectors/eicar.ts';
import { apiTokenCreate } from '../src/db/sql/api-tokens.ts';
import { fullScanStart } from '../src/db/sql/full-scans.ts';
import { ensureDemo } from '../src/dev.ts';
import { hashToken, newApiToken } from '../src/server/auth.ts';
import { runCli } from './helpers/cli-run.ts';
import { createTestDatabase, type TestDatabase } from './helpers/db.ts';
import { apiServer, waitForListen } from './helpers/graphql.ts';
import { emulator, testConfig, waitFor, waitForScan, workers } from './helpers/pipeline.ts';
import { csvRecords, fencedBlocks, readme, sqlStatements, type FencedBlock, type SqlStatement } from './helpers/readme.ts';

/** Placeholders of the README's examples and what the test puts in their place. */
type Placeholders = Record<string, string>;

interface Result {
  data?: Record<string, unknown> | null;
  errors?: { message: string }[];
}

interface World {
  db: TestDatabase;
  apiUrl: string;
  bearer: string;
  share: string;
}

function substitute(text: string, placeholders: Placeholders): string {
  let out = text;
  for (const [from, to] of Object.entries(placeholders)) out = out.split(from).join(to);
  return out;
}

/** A query or mutation over HTTP, as GraphiQL sends it: the whole block and the operation's name. */
async function post(w: World, query: string, operationName: string | undefined): Promise<Result> {
  const res = await fetch(w.apiUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json', authorization: `Bearer ${w.bearer}` },
    body: JSON.stringify({ query, operationName }),
  });
  return (await res.json()) as Result;
}

/**
 * How each subscription of the README is driven to an end. A stream that ends by itself is read to
 * its end; one that stays open gets `trigger` (run once the server listens) and is read to its first event.
 */
const SUBSCRIPTIONS: Record<string, { ends: true } | { ends: false; trigger: (w: World, t: Test) => Promise<void> }> = {
  fullScanProgress: { ends: true },
  scanResults: {
    ends: false,
    // A new detection in the finance folder and a scan of its scope (id 2, as the README's examples say).
    async trigger(w) {
      await waitForListen(w.db.pool, 'dsx_scan_results:');
      fs.writeFileSync(path.join(w.share, 'finance', 'late-arrival.com'), EICAR_TEST_STRING);
      const { fullScanId } = await fullScanStart(w.db.pool, 2, 'readme-test');
      await waitForScan(w.db.pool, fullScanId);
    },
  },
};

/** Runs one subscription operation; resolves with its events (all of them, or the first of an open stream). */
function subscribe(w: World, query: string, op: OperationDefinitionNode, t: Test): Promise<Result[]> {
  const field = op.selectionSet.selections.find((s) => s.kind === Kind.FIELD);
  const root = field?.kind === Kind.FIELD ? field.name.value : '';
  const driver = SUBSCRIPTIONS[root];
  if (!driver) return Promise.reject(new Error(`no driver for subscription field ${root}: say in SUBSCRIPTIONS how it ends`));
  const client = createClient({
    url: w.apiUrl.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${w.bearer}` },
    retryAttempts: 0,
  });
  const events: Result[] = [];
  const done = new Promise<Result[]>((resolve, reject) => {
    const stop = client.subscribe(
      { query, operationName: op.name?.value },
      {
        next: (e) => {
          events.push(e as Result);
          if (!driver.ends) {
            stop();
            resolve(events);
          }
        },
        error: (err) => reject(err instanceof Error ? err : new Error(JSON.stringify(err))),
        complete: () => resolve(events),
      },
    );
    if (!driver.ends) driver.trigger(w, t).catch(reject);
  });
  return done.finally(() => client.dispose());
}

/** Runs every operation of a graphql block in order; each failure names the operation's README line. */
async function runGraphqlBlock(t: Test, w: World, block: FencedBlock, placeholders: Placeholders, results: Map<string, Result[]>) {
  const query = substitute(block.text, placeholders);
  const doc = parse(query);
  const ops = doc.definitions.filter((d): d is OperationDefinitionNode => d.kind === Kind.OPERATION_DEFINITION);
  t.ok(ops.length > 0, `README.md:${block.line}: the block has an operation`);
  for (const op of ops) {
    const line = block.line + getLocation(doc.loc!.source, op.loc!.start).line - 1;
    const where = `README.md:${line}: ${op.operation} ${op.name?.value ?? '(anonymous)'}`;
    if (ops.length > 1 && !op.name) {
      t.fail(`${where}: a block with several operations must name each one (GraphiQL runs one at a time, by name)`);
      continue;
    }
    let events: Result[];
    try {
      events = op.operation === 'subscription' ? await subscribe(w, query, op, t) : [await post(w, query, op.name?.value)];
    } catch (err) {
      t.fail(`${where}: ${(err as Error).message}`);
      continue;
    }
    t.ok(events.length > 0, `${where} answers`);
    for (const e of events) {
      t.same(e.errors ?? [], [], `${where} has no errors`);
      t.ok(e.data && Object.values(e.data).every((v) => v !== null), `${where} returns data: ${JSON.stringify(e.data)}`);
    }
    results.set(op.name?.value ?? `line ${line}`, events);
  }
}

/** Statement index -> README statement, and the psql script that runs them with a marker before each. */
function psqlScript(statements: SqlStatement[]): string {
  return statements.map((s, i) => `\\echo @@ ${i}\n${s.text}\n`).join('');
}

/**
 * Runs the statements of the sql blocks through `dsx-connect psql` in one session, as the README says,
 * with ON_ERROR_STOP; returns each statement's rows (psql --csv), or fails naming the README line.
 */
async function runSql(t: Test, w: World, statements: SqlStatement[]): Promise<Map<SqlStatement, Record<string, string>[]> | undefined> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-readme-sql-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'readme.sql');
  fs.writeFileSync(file, psqlScript(statements));
  const r = await runCli(w.db.url, ['psql', '--', '-X', '-q', '--csv', '-v', 'ON_ERROR_STOP=1', '-f', file]);
  const parts = `\n${r.stdout}`.split(/\n@@ (\d+)\n?/);
  const rows = new Map<SqlStatement, Record<string, string>[]>();
  for (let i = 1; i < parts.length; i += 2) rows.set(statements[Number(parts[i])]!, csvRecords(parts[i + 1] ?? ''));
  if (r.code !== 0) {
    const failed = statements[rows.size - 1];
    t.fail(`README.md:${failed?.line ?? '?'}: ${failed?.title ?? 'a recipe'}: psql exited ${r.code}: ${r.stderr}`);
    return undefined;
  }
  t.same(r.stderr, '', 'psql printed no warnings');
  return rows;
}

t.test('the README\'s GraphQL examples and psql recipes run as written against a real database', async (t) => {
  const blocks = fencedBlocks(readme());
  const graphqlBlocks = blocks.filter((b) => b.lang === 'graphql');
  const statements = blocks.filter((b) => b.lang === 'sql').flatMap(sqlStatements);
  t.ok(graphqlBlocks.length >= 3, `${graphqlBlocks.length} graphql blocks found`);
  t.ok(statements.length >= 10, `${statements.length} SQL recipes found`);

  // What `npm start` and the README's first steps leave: the demo scope scanned (full scan 1) and a
  // file dropped into its monitored folder.
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const api = await apiServer(t, db.url);
  const demoDir = await ensureDemo({ url: db.url, pool: db.pool, embedded: undefined, close: async () => {} }, t.testdir());
  const w = await workers(t, db.pool, { dsxaUrl: emu.url, config: testConfig({ monitorSyncMs: 100 }) });
  const demo = await fullScanStart(db.pool, 1, 'readme-test');
  t.equal(demo.fullScanId, 1, 'the demo scan is full scan 1');
  t.match(await waitForScan(db.pool, 1), { status: 'completed', finalized: 200, unable_to_scan_count: 1 });
  await w.watcher!.sync();
  await w.watcher!.ready();
  fs.writeFileSync(path.join(demoDir, 'dropped.com'), EICAR_TEST_STRING);
  await waitFor(async () => {
    const { rows } = await db.pool.query(
      `select 1 from dsx.monitor_events e join dsx.scan_results r on r.id = e.scan_result_id
        where e.object_identity = 'dropped.com' and r.state = 'finalized' and r.outcome = 'malicious'`,
    );
    return rows.length > 0;
  }, 'the dropped file to be scanned through monitoring');
  const bearer = newApiToken();
  await apiTokenCreate(db.pool, { name: 'readme', role: 'operator', sha256: hashToken(bearer), expiresDays: null });
  const share = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-readme-share-'));
  t.teardown(() => fs.rmSync(share, { recursive: true, force: true }));
  fs.mkdirSync(path.join(share, 'finance'));
  fs.writeFileSync(path.join(share, 'finance', 'invoice.pdf'), 'an invoice\n');
  fs.writeFileSync(path.join(share, 'finance', 'invoice.com'), EICAR_TEST_STRING);
  const world: World = { db, apiUrl: `${api.url}/graphql`, bearer, share };

  const results = new Map<string, Result[]>();
  for (const block of graphqlBlocks) await runGraphqlBlock(t, world, block, { '/srv/share': share }, results);
  // The ids the examples assume are the ones they get.
  t.match(results.get('CreateShare')?.[0]?.data, { createIntegration: { integration: { rowId: '2' } } }, 'CreateShare makes integration 2');
  t.match(results.get('CreateFinance')?.[0]?.data, { createScope: { scope: { rowId: '2' } } }, 'CreateFinance makes scope 2');
  t.match(results.get('ScanFinance')?.[0]?.data, { startFullScan: { fullScan: { rowId: '2' } } }, 'ScanFinance starts full scan 2');
  t.match(results.get('WatchFinance')?.at(-1)?.data, { fullScanProgress: { status: 'completed', finalized: 2 } }, 'the watched scan ends completed');
  t.match(results.get('FinanceDetections')?.[0]?.data, { scanResults: { objectIdentity: 'finance/late-arrival.com', outcome: 'malicious' } });

  // The psql recipes see a quiet queue (workers stopped) with one active scan, one job running and
  // one waiting to be retried.
  await w.stop();
  await fullScanStart(db.pool, 1, 'readme-test');
  await db.pool.query(`
    update graphile_worker._private_jobs j set locked_at = now(), locked_by = 'readme-test', attempts = 1
      from graphile_worker._private_tasks k where k.id = j.task_id and k.identifier = 'full-scan-scope'`);
  const { rows: [retry] } = await db.pool.query(`select id from graphile_worker.add_job('full-scan-scope', '{}'::json, run_at := now() + interval '1 hour')`);
  await db.pool.query(`update graphile_worker._private_jobs set attempts = 1, last_error = 'readme-test: failed once' where id = $1`, [retry.id]);

  const rows = await runSql(t, world, statements);
  if (!rows) return;
  for (const s of statements) t.ok((rows.get(s)?.length ?? 0) > 0, `README.md:${s.line}: ${s.title}: returns rows`);
  const recipe = (pattern: RegExp) => {
    const s = statements.find((x) => pattern.test(x.text));
    t.ok(s, `a recipe matching ${pattern} is in the README`);
    return s ? rows.get(s) ?? [] : [];
  };
  t.match(recipe(/as retrying/).find((r) => r.task === 'full-scan-scope'), { jobs: '2', running: '1', retrying: '1' },
    'queue depth: a running job that failed before is running, not retrying');
  t.ok(recipe(/outcome not in \('clean', 'malicious'\)/).some((r) => r.outcome === 'unable_to_scan'), 'failures by reason of full scan 1');
  t.ok(recipe(/e\.action = 'move'/).some((r) => r.object_identity === 'finance/invoice.com' && /moved to /.test(r.detail ?? '')), 'the quarantined file and where it went');
  t.ok(recipe(/object_identity = 'dropped.com'/).length > 0, 'the dropped file\'s history');
  t.match(recipe(/percentile_cont/)[0], { percentile_cont: /^\{[0-9:. ]/ }, 'monitoring latency has values');
});
