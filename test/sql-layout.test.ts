/**
 * The SQL layout's rules (sql/README.md), checked on the files: every function, trigger and view has
 * exactly one definition, in sql/functions; versioned migrations define none of them and call none of
 * our functions; and the function files are re-applied when, and only when, they change.
 */
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import t from 'tap';
import { createDatabaseIfMissing, makePool } from '../src/db/connect.ts';
import { databaseUrl } from '../src/db/embedded.ts';
import { FUNCTIONS_DIR, functionFiles, isFoundation, migrateDetailed, migrationFiles } from '../src/db/migrate.ts';

/** SQL without comments and string literals (dollar-quoted bodies stay: definitions live there). */
function code(sql: string): string {
  return sql.replace(/--[^\n]*/g, '').replace(/'(?:[^']|'')*'/g, "''");
}

const DEFINITION = /\bcreate\s+(?:or\s+replace\s+)?(function|trigger|view)\s+([\w.]+)/gi;

function definitions(sql: string): { kind: string; name: string }[] {
  return [...code(sql).matchAll(DEFINITION)].map((m) => ({ kind: m[1]!.toLowerCase(), name: m[2]!.toLowerCase() }));
}

t.test('every function, trigger and view is defined exactly once, in sql/functions', async (t) => {
  const seen = new Map<string, string>();
  for (const f of functionFiles()) {
    for (const d of definitions(f.sql)) {
      const key = `${d.kind} ${d.name}`;
      t.notOk(seen.has(key), `${key} is defined once (${f.name}${seen.has(key) ? ` and ${seen.get(key)}` : ''})`);
      seen.set(key, f.name);
    }
  }
  t.ok(seen.size > 40, `found ${seen.size} definitions`);
  // Migrations may use the foundation's functions (constraints, index expressions), applied before them.
  const later = functionFiles()
    .filter((f) => !isFoundation(f))
    .flatMap((f) => definitions(f.sql).filter((d) => d.kind === 'function').map((d) => d.name));
  for (const m of migrationFiles()) {
    t.same(definitions(m.sql), [], `${m.name} defines no function, trigger or view`);
    // A versioned `drop function` of an old signature (rule 2) names a function without calling it.
    const body = code(m.sql).replace(/\bdrop\s+function\s+(if\s+exists\s+)?[\w.]+\s*\(/gi, '');
    const calls = later.filter((fn) => new RegExp(`\\b${fn.replace('.', '\\.')}\\s*\\(`, 'i').test(body));
    t.same(calls, [], `${m.name} calls none of the functions applied after the migrations`);
  }
});

t.test('foundation files use nothing a migration creates', async (t) => {
  for (const f of functionFiles().filter(isFoundation)) {
    const referenced = [...code(f.sql).matchAll(/\b(dsx(?:_private)?\.[a-z_]+)\b/gi)].map((m) => m[1]!.toLowerCase());
    const own = new Set(definitions(f.sql).map((d) => d.name));
    t.same(referenced.filter((r) => !own.has(r)), [], `${f.name} references only its own functions`);
  }
});

t.test('function files are applied with the migrations, re-applied when one changes, and not otherwise', async (t) => {
  const admin = process.env.DSX_TEST_ADMIN_URL!;
  const name = `l_${Date.now().toString(36)}`;
  await createDatabaseIfMissing(admin, name);
  const pool = makePool(databaseUrl(admin, name), 4);
  t.teardown(async () => {
    await pool.end();
    const c = new pg.Client({ connectionString: admin });
    await c.connect();
    await c.query(`drop database ${name} with (force)`);
    await c.end();
  });
  const first = await migrateDetailed(pool);
  t.same(first.migrations, migrationFiles().map((f) => f.name), 'a new database gets every migration');
  t.equal(first.functions, true, 'and the function files');
  const { rows } = await pool.query<{ name: string }>('select name from public.dsx_function_files order by name');
  t.same(rows.map((r) => r.name), fs.readdirSync(FUNCTIONS_DIR).filter((f) => f.endsWith('.sql')).sort(), 'each file recorded with its checksum');
  t.same(await migrateDetailed(pool), { migrations: [], functions: false }, 'nothing changed: nothing applied');

  // An older version of a function (as after a deploy of changed files): the recorded checksum differs.
  await pool.query(`update public.dsx_function_files set sha256 = 'older' where name = '10_common.sql'`);
  await pool.query(`create or replace function dsx_private.default_policy() returns jsonb language sql immutable as $$ select '{}'::jsonb $$`);
  t.same(await migrateDetailed(pool), { migrations: [], functions: true }, 'a changed file re-applies the function files');
  const { rows: p } = await pool.query<{ p: unknown }>('select dsx_private.default_policy() as p');
  t.same(p[0]!.p, { malicious: { remediation: 'none', notify: true } }, 'the current definition is back');
});
