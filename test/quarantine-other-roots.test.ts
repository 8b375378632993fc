/**
 * A filesystem integration's quarantine directory must stay out of EVERY filesystem integration's
 * root, not only its own (issue 13 item 1): `integration add` and GraphQL createIntegration refuse a
 * quarantine inside or containing another integration's root, and a root covering another
 * integration's quarantine, in the same one-line words; and a quarantine that got there anyway (settings
 * written through SQL) makes the move fail with that reason, nothing moved, the other share untouched.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import t, { type Test } from 'tap';
import { integrationCreate } from '../src/db/sql/catalog.ts';
import { EICAR } from '../src/testing/fixtures.ts';
import { createTestDatabase } from './helpers/db.ts';
import { apiServer, operation, token } from './helpers/graphql.ts';
import { runCli } from './helpers/cli-run.ts';
import { emulator, fsScope, testConfig, waitFor, waitForScan, workers } from './helpers/pipeline.ts';

const EVERY = "choose a directory outside every filesystem integration's root (the default is <DSX_DATA_DIR>/quarantine/<integration id>)";

/** The files below `dir`, relative, sorted, with their contents (what a share holds). */
function tree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    const p = path.join(e.parentPath, e.name);
    if (e.isFile()) out[path.relative(dir, p)] = fs.readFileSync(p, 'utf8');
    else if (e.isDirectory()) out[`${path.relative(dir, p)}/`] = '';
  }
  return out;
}

async function integrationCount(pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ n: number }>('select count(*)::int as n from dsx.integrations');
  return rows[0]!.n;
}

/** A data directory (DSX_DATA_DIR) of its own, outside the test's shares. */
function dataDir(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-qroots-data-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('integration add refuses a quarantine inside or containing another integration\'s root, and a root over another\'s quarantine, in one line', async (t) => {
  const db = await createTestDatabase(t);
  const base = t.testdir({ a: { 'a.txt': 'a' }, b: { 'b.txt': 'b' }, outer: { c: { 'c.txt': 'c' } }, cq: { sub: {} } });
  fs.chmodSync(path.join(base, 'cq'), 0o700);
  const env = { DSX_DATA_DIR: dataDir(t) };
  const add = (name: string, ...flags: string[]) => runCli(db.url, ['integration', 'add', '--name', name, '--kind', 'filesystem', ...flags], { env });
  const a = path.join(base, 'a');
  const b = path.join(base, 'b');
  const c = path.join(base, 'outer', 'c');

  const okB = await add('b', '--root', b);
  t.same([okB.code, okB.stderr, okB.stdout], [0, '', '1'], 'b is added (id 1)');
  const okC = await add('c', '--root', c, '--quarantine', path.join(base, 'cq'));
  t.same([okC.code, okC.stderr, okC.stdout], [0, '', '2'], 'c is added with its own quarantine (id 2)');

  const inside = await add('a', '--root', a, '--quarantine', path.join(b, 'evidence'));
  t.same([inside.code, inside.stderr], [1, `error: quarantine directory ${path.join(b, 'evidence')} is inside the root ${b} of filesystem integration b (id 1), whose share users could tamper with it; ${EVERY}`], 'inside another root: named, and what to do');

  const viaSettings = await add('a', '--root', a, '--settings', JSON.stringify({ quarantine_dir: b }));
  t.same([viaSettings.code, viaSettings.stderr], [1, `error: quarantine directory ${b} is inside the root ${b} of filesystem integration b (id 1), whose share users could tamper with it; ${EVERY}`], 'the other root itself, through --settings');

  const containing = await add('a', '--root', a, '--quarantine', path.join(base, 'outer'));
  t.same([containing.code, containing.stderr], [1, `error: quarantine directory ${path.join(base, 'outer')} contains the root ${c} of filesystem integration c (id 2); ${EVERY}`], 'containing another root');

  // By real path: a link outside every share that leads into b.
  fs.symlinkSync(b, path.join(base, 'b-link'));
  const linked = await add('a', '--root', a, '--quarantine', path.join(base, 'b-link', 'q'));
  t.equal(linked.code, 1, 'a quarantine reached through a symlink into another share');
  t.match(linked.stderr, /^error: quarantine directory \S+ is inside the root \S+\/b of filesystem integration b \(id 1\), whose share users could tamper with it; choose a directory outside every/);
  t.notOk(linked.stderr.includes('\n'), 'in one line');

  const coversExplicit = await add('d', '--root', base);
  t.same([coversExplicit.code, coversExplicit.stderr], [1,
    `error: filesystem root ${base} contains the quarantine directory ${path.join(base, 'cq')} of filesystem integration c (id 2), whose evidence this share's users could then tamper with; choose a root that does not overlap it, or first give that integration a quarantine_dir outside every root`,
  ], 'a root over an explicit quarantine of another integration');
  const coversDefault = await add('d', '--root', env.DSX_DATA_DIR);
  t.same([coversDefault.code, coversDefault.stderr], [1,
    `error: filesystem root ${env.DSX_DATA_DIR} contains the quarantine directory ${path.join(env.DSX_DATA_DIR, 'quarantine', '1')} of filesystem integration b (id 1), whose evidence this share's users could then tamper with; choose a root that does not overlap it, or first give that integration a quarantine_dir outside every root`,
  ], "a root over another integration's default quarantine <DSX_DATA_DIR>/quarantine/<id>");
  const insideQuarantine = await add('d', '--root', path.join(base, 'cq', 'sub'));
  t.match(insideQuarantine.stderr, /^error: filesystem root \S+\/cq\/sub is inside the quarantine directory \S+\/cq of filesystem integration c \(id 2\)/, 'a root inside another quarantine');

  t.equal(await integrationCount(db.pool), 2, 'nothing refused was written');
  t.same(fs.readdirSync(b), ['b.txt'], 'nothing was created in the other share');

  const fine = await add('a', '--root', a, '--quarantine', path.join(base, 'aq'));
  t.same([fine.code, fine.stderr, fine.stdout], [0, '', '3'], 'a quarantine outside every root is accepted');
  const fineAgain = await add('a', '--root', a, '--quarantine', path.join(base, 'aq'));
  t.equal(fineAgain.code, 1, 'adding it twice is refused by its name, not half-done');
  t.equal(await integrationCount(db.pool), 3, 'one row for it');

  // A share over the data directory, written through SQL past these checks: the default quarantine of
  // any new integration would lie in it, so one without --quarantine is refused.
  const wide = await integrationCreate(db.pool, { name: 'wide', kind: 'filesystem', settings: { root: env.DSX_DATA_DIR } });
  const byDefault = await add('e', '--root', a);
  t.same([byDefault.code, byDefault.stderr], [1,
    `error: the default quarantine directory ${path.join(env.DSX_DATA_DIR, 'quarantine', '<integration id>')} would overlap the root ${env.DSX_DATA_DIR} of filesystem integration wide (id ${wide.id}), whose share users could tamper with it; give a quarantine directory outside every filesystem integration's root (--quarantine, settings.quarantine_dir)`,
  ], 'the default quarantine is checked too');
});

t.test('GraphQL createIntegration refuses the same settings with the same message as the CLI', async (t) => {
  const db = await createTestDatabase(t);
  const api = await apiServer(t, db.url);
  const operator = await token('operator');
  const base = t.testdir({ a: { 'a.txt': 'a' }, b: { 'b.txt': 'b' }, bq: {} });
  fs.chmodSync(path.join(base, 'bq'), 0o700);
  const [a, b, bq] = ['a', 'b', 'bq'].map((n) => path.join(base, n)) as [string, string, string];
  const create = (name: string, settings: Record<string, unknown>) => api.query(operation('create-integration'), { name, kind: 'filesystem', settings }, operator);

  const first = await create('b', { root: b, quarantine_dir: bq });
  t.notOk(first.errors, JSON.stringify(first.errors));
  const id = Number(first.data.createIntegration.integration.rowId);

  const inside = await create('a', { root: a, quarantine_dir: path.join(b, 'q') });
  t.match(inside.errors, [{ message: `quarantine directory ${path.join(b, 'q')} is inside the root ${b} of filesystem integration b (id ${id}), whose share users could tamper with it; ${EVERY}`, extensions: { code: '22023' } }], 'inside another root');
  const viaCli = await runCli(db.url, ['integration', 'add', '--name', 'a', '--kind', 'filesystem', '--root', a, '--quarantine', path.join(b, 'q')]);
  t.equal(viaCli.stderr, `error: ${inside.errors?.[0]?.message}`, 'the CLI says the same');

  const covers = await create('d', { root: base, quarantine_dir: path.join(path.dirname(base), `${path.basename(base)}-dq`) });
  t.match(covers.errors, [{ message: `filesystem root ${base} contains the quarantine directory ${bq} of filesystem integration b (id ${id}), whose evidence this share's users could then tamper with; choose a root that does not overlap it, or first give that integration a quarantine_dir outside every root` }], 'a root over another quarantine');
  t.equal(await integrationCount(db.pool), 1, 'nothing refused was written');

  const fine = await create('a', { root: a, quarantine_dir: path.join(base, 'aq') });
  t.notOk(fine.errors, JSON.stringify(fine.errors));
  t.equal(await integrationCount(db.pool), 2, 'a quarantine outside every root is accepted');
});

t.test('a quarantine in another share set through SQL fails the move with the reason, and nothing moves', async (t) => {
  const db = await createTestDatabase(t);
  const emu = await emulator(t);
  const base = t.testdir({
    b: { 'b.txt': 'b', inner: { 'kept.txt': 'k' } },
    a: { 'bad.com': EICAR, 'fine.txt': 'hello' },
    l: { 'bad.com': EICAR },
    g: { 'bad.com': EICAR },
  });
  const [b, a, l, g] = ['b', 'a', 'l', 'g'].map((n) => path.join(base, n)) as [string, string, string, string];
  fs.symlinkSync(path.join(b, 'inner'), path.join(base, 'link-q'));
  const before = tree(b);
  const policy = { malicious: { remediation: 'move', notify: false } };
  // Written straight through SQL (dsx.create_integration): the host-side checks of integration add never ran.
  const other = await fsScope(db.pool, { dir: b, name: 'b' });
  const lexical = await fsScope(db.pool, { dir: a, name: 'a', policy, settings: { quarantine_dir: path.join(b, 'evidence') } });
  const linked = await fsScope(db.pool, { dir: l, name: 'l', policy, settings: { quarantine_dir: path.join(base, 'link-q') } });
  const good = await fsScope(db.pool, { dir: g, name: 'g', policy, settings: { quarantine_dir: path.join(base, 'good-q') } });
  await workers(t, db.pool, { dsxaUrl: emu.url, config: testConfig({ dataDir: dataDir(t) }) });

  const moves = async (scopeId: number) => {
    const { rows } = await db.pool.query<{ status: string; detail: string | null }>(
      `select e.status, e.detail from dsx.side_effects e join dsx.scan_results r on r.id = e.scan_result_id
        where r.scope_id = $1 and e.kind = 'remediation'`,
      [scopeId],
    );
    return rows;
  };
  for (const scope of [lexical, linked, good]) {
    const { rows } = await db.pool.query<{ id: string }>(`select (dsx.start_full_scan($1, 'test')).full_scan_id as id`, [scope.id]);
    await waitForScan(db.pool, Number(rows[0]!.id));
    await waitFor(async () => (await moves(scope.id)).some((m) => m.status === 'failed' || m.status === 'done'), `the move of scope ${scope.name} to end`);
  }

  t.match(await moves(lexical.id), [{
    status: 'failed',
    detail: `quarantine directory ${path.join(b, 'evidence')} is inside the root ${b} of filesystem integration b (id ${other.integration_id}), whose share users could tamper with it; ${EVERY}`,
  }], 'inside the other root: failed, with the reason');
  t.match(await moves(linked.id), [{ status: 'failed', detail: new RegExp(`^quarantine directory \\S+/b/inner is inside the root \\S+/b of filesystem integration b \\(id ${other.integration_id}\\)`) }], 'by real path (a symlink into the other share): failed too');
  t.equal(fs.readFileSync(path.join(a, 'bad.com'), 'utf8'), EICAR, 'the malicious file is left in place');
  t.equal(fs.readFileSync(path.join(l, 'bad.com'), 'utf8'), EICAR, 'in both');
  t.same(tree(b), before, 'the other share is untouched: no quarantine directory was created in it, nothing was written into it');

  t.match(await moves(good.id), [{ status: 'done', detail: /^moved to / }], 'a quarantine outside every root still works');
  t.notOk(fs.existsSync(path.join(g, 'bad.com')), 'the file left its share');
  t.equal(fs.readdirSync(path.join(base, 'good-q')).length, 1, 'into the quarantine');
});
