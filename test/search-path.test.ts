/**
 * CVE-2018-1058-style shadowing: with PostgreSQL 14's default ACL (PUBLIC may create in schema public),
 * a member of dsx_operator plants functions in public that beat a polymorphic built-in on argument
 * types (format, jsonb_build_object, cardinality, unnest, ...). Before every function pinned its
 * search_path, dsx.create_scope called the planted format(text, bigint) with its owner's rights: a
 * superuser in the embedded setup. Now no entry point, operator or worker side, resolves anything
 * through public.
 */
import pg from 'pg';
import t from 'tap';
import { databaseUrl } from '../src/db/embedded.ts';
import { createTestDatabase } from './helpers/db.ts';
import { fsScope } from './helpers/pipeline.ts';

/** Shadows of polymorphic or variadic built-ins our functions call, each exactly typed for a call site. */
const SHADOWS = [
  'format(text, bigint)',
  'format(text, text)',
  'format(text, text, bigint)',
  'format(text, bigint, text)',
  'jsonb_build_object(text, bigint)',
  'jsonb_build_object(text, text)',
  'json_build_object(text, bigint)',
  'json_build_object(text, bigint, text, text)',
  'cardinality(bigint[])',
  'cardinality(text[])',
  'to_jsonb(bigint[])',
  'array_to_string(text[], text)',
];

/** What a shadow returns: the built-in's result type for the call sites it imitates. */
function returnType(sig: string): string {
  if (sig.startsWith('cardinality')) return 'integer';
  if (sig.startsWith('jsonb') || sig.startsWith('to_jsonb')) return 'jsonb';
  if (sig.startsWith('json')) return 'json';
  return 'text';
}

/** Grants the PostgreSQL 14 ACL on purpose and plants the shadows as dsx_operator (admin connection). */
async function plant(dbName: string): Promise<void> {
  const admin = new pg.Client({ connectionString: databaseUrl(process.env.DSX_TEST_ADMIN_URL!, dbName) });
  await admin.connect();
  try {
    await admin.query('grant create on schema public to public');
    await admin.query('set role dsx_operator');
    for (const sig of SHADOWS) {
      const name = sig.replaceAll("'", "''");
      await admin.query(
        `create function public.${sig} returns ${returnType(sig)} language plpgsql as $f$
           begin raise exception 'shadow % ran as %', '${name}', current_user; end $f$`,
      );
    }
  } finally {
    await admin.end();
  }
}

t.test('functions planted in public under the PostgreSQL 14 ACL never run inside our functions', async (t) => {
  const db = await createTestDatabase(t);
  await plant(db.name);
  const scope = await fsScope(db.pool, { dir: t.testdir(), name: 'shadowed' });

  // The attacker's session: dsx_operator, with public on its search_path (the default "$user", public).
  const c = await db.pool.connect();
  t.teardown(() => c.release());
  await c.query('set role dsx_operator');
  const { rows: path } = await c.query<{ p: string }>('select current_setting($1) as p', ['search_path']);
  t.match(path[0]!.p, /public/, `the caller resolves through public (search_path ${path[0]!.p})`);
  await c.query('begin');

  const calls: [string, string, unknown[]][] = [
    ['create_scope on an unknown integration', 'select dsx.create_scope($1, $2, $3)', [999_999, 'x', 'y']],
    ['create_scope with a bad policy', `select dsx.create_scope($1, 'bad', 'b', '{}', '{}', '{"clean": 1}')`, [scope.integration_id]],
    ['create_scope', `select dsx.create_scope($1, 'sub', 'sub')`, [scope.integration_id]],
    ['create_integration', `select dsx.create_integration('i2', 'filesystem', '{"root": "/tmp"}', '{"k": "v"}')`, []],
    ['create_integration with bad settings', `select dsx.create_integration('i3', 'filesystem', '{}')`, []],
    ['set_integration_credentials', `select dsx.set_integration_credentials($1, '{"k": "v2"}')`, [scope.integration_id]],
    ['set_scope_policy', `select dsx.set_scope_policy($1, '{"malicious": {"notify": true}}')`, [scope.id]],
    ['set_scope_policy on an unknown scope', `select dsx.set_scope_policy(999999, '{}')`, []],
    ['set_scope_monitor', 'select dsx.set_scope_monitor($1, true)', [scope.id]],
    ['create_notification_channel', `select dsx.create_notification_channel('c1', 'https://example.com/h', 'a-long-secret')`, []],
    ['start_full_scan', 'select dsx.start_full_scan($1)', [scope.id]],
    ['start_full_scan again (already active)', 'select dsx.start_full_scan($1)', [scope.id]],
    ['start_full_scan on an unknown scope', 'select dsx.start_full_scan(999999)', []],
    ['verify_full_scan on an unknown scan', 'select * from dsx.verify_full_scan(999999)', []],
    ['cancel_full_scan', `select dsx.cancel_full_scan((select max(id) from dsx.full_scans), 'interrupt')`, []],
    ['verify_full_scan', 'select * from dsx.verify_full_scan((select max(id) from dsx.full_scans))', []],
  ];
  for (const [what, sql, args] of calls) {
    await c.query('savepoint s');
    const err = await c.query(sql, args).then(
      () => null,
      (e: Error) => e,
    );
    await c.query('rollback to savepoint s');
    t.notMatch(err?.message ?? '', /shadow .* ran as/, `${what}: ${err ? `refused on its own terms (${err.message.slice(0, 60)})` : 'ran'} without a planted function`);
  }

  await c.query('commit');

  // The worker side: the owner's session, with public on its search_path too.
  await c.query('reset role');
  const { rows: scans } = await c.query<{ id: string }>('select (dsx.start_full_scan($1)).full_scan_id as id', [scope.id]);
  const id = Number(scans[0]!.id);
  for (const [what, sql] of [
    ['begin_full_scan', `select dsx_private.begin_full_scan(${id})`],
    ['record_page', `select dsx_private.record_page(${id}, 0, '[{"identity": "a.txt", "size": 1}]', null, gen_random_uuid(), 3)`],
    ['finalize_results', `select * from dsx_private.finalize_results((select jsonb_agg(jsonb_build_object('idempotency_key', idempotency_key, 'outcome', 'clean', 'normalization_version', 1, 'job_id', gen_random_uuid())) from dsx.scan_results where full_scan_id = ${id}))`],
    ['fail_full_scan', `select dsx_private.fail_full_scan(${id}, 'x')`],
  ] as const) {
    const err = await c.query(sql).then(
      () => null,
      (e: Error) => e,
    );
    t.notMatch(err?.message ?? '', /shadow .* ran as/, `${what}: ${err ? err.message.slice(0, 80) : 'ran'} without a planted function`);
  }
});

t.test('every function of dsx and dsx_private pins search_path to pg_catalog, pg_temp', async (t) => {
  const db = await createTestDatabase(t, 2);
  const { rows } = await db.pool.query<{ fn: string; config: string[] | null }>(
    `select p.oid::regprocedure::text as fn, p.proconfig as config
       from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname in ('dsx', 'dsx_private')`,
  );
  t.ok(rows.length > 40, `${rows.length} functions`);
  for (const r of rows) t.ok(r.config?.includes('search_path=pg_catalog, pg_temp'), `${r.fn}: search_path pinned`);
  const { rows: acl } = await db.pool.query<{ ok: boolean }>(`select not has_schema_privilege('public', 'public', 'create') as ok`);
  t.ok(acl[0]!.ok, 'PUBLIC may not create in schema public');
});
