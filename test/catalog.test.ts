import t from 'tap';
import { integrationCreate, scopeCreate } from '../src/db/sql/catalog.ts';
import { createTestDatabase } from './helpers/db.ts';

const scopeArgs = (integrationId: number, name: string, root: string) => ({
  integrationId, name, root, include: [], exclude: [], policy: {}, monitor: false,
});

t.test('overlapping scopes are refused with an error naming the colliding scope', async (t) => {
  const db = await createTestDatabase(t);
  const dir = t.testdir();
  const a = await integrationCreate(db.pool, { name: 'a', kind: 'filesystem', settings: { root: dir } });
  const b = await integrationCreate(db.pool, { name: 'b', kind: 'filesystem', settings: { root: dir } });
  const docs = await scopeCreate(db.pool, scopeArgs(a.id, 'docs', 'docs/'));
  t.equal(docs.root, 'docs', 'roots are normalized');
  for (const [i, root] of ['docs', './docs', 'docs/2024', 'docs//2024/q1/', '', '.'].entries()) {
    await t.rejects(scopeCreate(db.pool, scopeArgs(a.id, `overlapping-${i}`, root)), {
      code: '23P01',
      message: new RegExp(`overlaps scope docs \\(id ${docs.id}, root 'docs'\\)`),
    }, `root ${JSON.stringify(root)} overlaps`);
  }
  await scopeCreate(db.pool, scopeArgs(a.id, 'docs2', 'docs2'));
  await scopeCreate(db.pool, scopeArgs(a.id, 'other', 'other/docs'));
  await scopeCreate(db.pool, scopeArgs(b.id, 'b-docs', 'docs'));
  t.pass('siblings, prefixes that are not ancestors, and other integrations are fine');
  await t.rejects(db.pool.query(`update dsx.scopes set root = 'docs/sub' where name = 'docs2'`), /overlaps scope docs/);
  const { rows } = await db.pool.query('select name from dsx.scopes order by id');
  t.same(rows.map((r) => r.name), ['docs', 'docs2', 'other', 'b-docs'], 'nothing half-written');
});

t.test('the no-overlap rule holds under concurrent inserts', async (t) => {
  const db = await createTestDatabase(t, 25);
  const a = await integrationCreate(db.pool, { name: 'a', kind: 'filesystem', settings: { root: t.testdir() } });
  const roots = ['p', 'p/q', 'p/q/r', 'p/s', 'p/q/t', 'p', 'p/q', 'p/x/y', 'p/q/r/s', 'p/z'];
  const results = await Promise.allSettled(roots.map((root, i) => scopeCreate(db.pool, scopeArgs(a.id, `s${i}`, root))));
  const ok = results.filter((r) => r.status === 'fulfilled').length;
  const { rows } = await db.pool.query(`select root from dsx.scopes order by root`);
  const stored = rows.map((r) => r.root as string);
  for (const x of stored) {
    for (const y of stored) {
      if (x !== y) t.notOk(y.startsWith(`${x}/`), `${x} and ${y} do not nest`);
    }
  }
  t.equal(new Set(stored).size, stored.length, 'no identical roots');
  t.equal(ok, stored.length);
  t.ok(results.some((r) => r.status === 'rejected'));
});

t.test('scope roots that escape the integration are refused', async (t) => {
  const db = await createTestDatabase(t);
  const a = await integrationCreate(db.pool, { name: 'a', kind: 'filesystem', settings: { root: t.testdir() } });
  await t.rejects(scopeCreate(db.pool, scopeArgs(a.id, 's1', '../etc')), /may not contain "\.\." segments/);
  await t.rejects(scopeCreate(db.pool, scopeArgs(a.id, 's2', 'a/../../b')), /may not contain "\.\." segments/);
  await t.rejects(scopeCreate(db.pool, scopeArgs(a.id, 's3', '/etc')), /must be relative to the integration root/);
  t.equal((await db.pool.query('select count(*)::int as n from dsx.scopes')).rows[0].n, 0);
});

t.test('bad integrations, names and policies get clear errors', async (t) => {
  const db = await createTestDatabase(t);
  await t.rejects(integrationCreate(db.pool, { name: 'fs', kind: 'filesystem', settings: {} }), /needs settings.root, an absolute directory path/);
  await t.rejects(integrationCreate(db.pool, { name: 'fs', kind: 'filesystem', settings: { root: 'relative' } }), /absolute directory/);
  await t.rejects(integrationCreate(db.pool, { name: 'has space', kind: 'synthetic', settings: { objects: 1 } }), /dsx\.name/);
  await t.rejects(integrationCreate(db.pool, { name: 'x', kind: 'ftp', settings: {} }), /integrations_kind_check/);
  const a = await integrationCreate(db.pool, { name: 'a', kind: 'synthetic', settings: { objects: 1 } });
  const policies: [unknown, RegExp][] = [
    [{ evil: {} }, /unknown outcome 'evil'/],
    [{ malicious: { remediation: 'burn' } }, /remediation must be one of none, tag, move, delete/],
    [{ malicious: { notify: 'yes' } }, /notify must be true, false or a list of channel names/],
    [{ malicious: { notify: [1] } }, /channel names must be strings/],
    [{ malicious: { remediation: 'move', extra: 1 } }, /unknown field 'extra'/],
    [[1, 2], /policy must be a JSON object/],
  ];
  for (const [policy, message] of policies) {
    await t.rejects(scopeCreate(db.pool, { ...scopeArgs(a.id, 's', ''), policy }), message);
  }
  // A policy may name only channels that exist, and a destructive one needs a confirmation.
  await db.pool.query(`select dsx.create_notification_channel('ops', 'https://hooks.example/ops', 'a-long-secret')`);
  const s = await scopeCreate(db.pool, { ...scopeArgs(a.id, 's', ''), policy: { malicious: { remediation: 'delete', notify: ['ops'] } }, allowDestructive: true });
  await t.rejects(db.pool.query(`select dsx.set_scope_policy($1, '{"clean": 3}')`, [s.id]), /policy.clean must be an object/);
  const { rows } = await db.pool.query('select policy from dsx.scopes where id = $1', [s.id]);
  t.same(rows[0].policy, { malicious: { remediation: 'delete', notify: ['ops'] } }, 'a refused policy changes nothing');
});

t.test('credentials are write-only and the audit log is append-only', async (t) => {
  const db = await createTestDatabase(t);
  await db.pool.query(`select dsx.create_integration('s3', 'synthetic', '{"objects": 1}', '{"secret_access_key": "SUPERSECRET"}')`);
  const { rows } = await db.pool.query(`select to_jsonb(i) as row from dsx.integrations i`);
  t.notMatch(JSON.stringify(rows), /SUPERSECRET/, 'no dsx.* relation shows credentials');
  const { rows: audit } = await db.pool.query(`select detail from dsx.audit_log`);
  t.notMatch(JSON.stringify(audit), /SUPERSECRET/, 'the audit trail does not either');
  await t.rejects(db.pool.query('delete from dsx.audit_log'), /append-only/);
  await t.rejects(db.pool.query(`update dsx.audit_log set actor = 'x'`), /append-only/);
  await t.rejects(db.pool.query('truncate dsx.audit_log'), /append-only/);

  // Credentials that are not a JSON object are refused before the insert, by a message that shows
  // nothing of them (a failed check constraint would print the whole row, credentials included).
  for (const bad of ['"SUPERSECRET-string"', '["SUPERSECRET"]', '42']) {
    const err = await db.pool.query(`select dsx.set_integration_credentials(1, $1::jsonb)`, [bad]).catch((e: Error & { code?: string; detail?: string }) => e);
    t.match(err, { code: '22023', message: /credentials must be a JSON object/ }, `${bad} refused`);
    t.notMatch(JSON.stringify({ m: (err as Error).message, d: (err as { detail?: string }).detail }), /SUPERSECRET/, 'the error shows nothing of them');
    await t.rejects(db.pool.query(`select dsx.create_integration('x', 'synthetic', '{"objects": 1}', $1::jsonb)`, [bad]), /credentials must be a JSON object/);
  }
  await t.rejects(db.pool.query(`select dsx.set_integration_credentials(1, null)`), /credentials must be a JSON object \(got null\)/);
  const { rows: n } = await db.pool.query(`select count(*)::int as n from dsx.integrations`);
  t.equal(n[0].n, 1, 'nothing created');
});
