import pg from 'pg';
import t from 'tap';
import { createDatabaseIfMissing, makePool } from '../src/db/connect.ts';
import { databaseUrl } from '../src/db/embedded.ts';
import { migrate, migrationFiles } from '../src/db/migrate.ts';

t.test('migrations apply once, also with many migrators at the same time', async (t) => {
  const admin = process.env.DSX_TEST_ADMIN_URL!;
  const name = `m_${Date.now().toString(36)}`;
  await createDatabaseIfMissing(admin, name);
  const pool = makePool(databaseUrl(admin, name), 25);
  t.teardown(async () => {
    await pool.end();
    const c = new pg.Client({ connectionString: admin });
    await c.connect();
    await c.query(`drop database ${name} with (force)`);
    await c.end();
  });
  const runs = await Promise.all(Array.from({ length: 8 }, () => migrate(pool)));
  const applied = runs.flat();
  t.same(applied.sort(), migrationFiles().map((f) => f.name).sort(), 'each file applied by exactly one migrator');
  t.same(await migrate(pool), [], 'a second run applies nothing');
  const { rows } = await pool.query('select count(*)::int as n from public.dsx_migrations');
  t.equal(rows[0].n, migrationFiles().length);
  await pool.query(`update public.dsx_migrations set sha256 = 'edited' where name = $1`, [migrationFiles()[0]!.name]);
  await t.rejects(migrate(pool), /was changed after it was applied; migrations are forward-only/);
});
