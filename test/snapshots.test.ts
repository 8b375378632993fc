/**
 * Every schema change shows in review: the migrated database's schema and the GraphQL API's printed
 * schema are compared with the committed files sql/schema-snapshot.sql and graphql/schema.graphql.
 * `npm run snapshots` rewrites both after a deliberate change.
 */
import fs from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { lexicographicSortSchema, printSchema } from 'postgraphile/graphql';
import { PROJECT_DIR } from '../src/config.ts';
import { dumpSchema } from '../src/db/schema-snapshot.ts';
import { graphqlSchemaOf } from './helpers/graphql.ts';
import { createTestDatabase } from './helpers/db.ts';

const WRITE = process.env.DSX_WRITE_SNAPSHOTS === '1';
const FILES = {
  schema: path.join(PROJECT_DIR, 'sql', 'schema-snapshot.sql'),
  graphql: path.join(PROJECT_DIR, 'graphql', 'schema.graphql'),
};

/** The first lines where two texts differ, for a readable failure. */
function firstDifference(expected: string, actual: string): string {
  const a = expected.split('\n');
  const b = actual.split('\n');
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if (a[i] !== b[i]) {
      return [`line ${i + 1}:`, ...a.slice(Math.max(0, i - 2), i + 3).map((l) => `  committed | ${l}`), ...b.slice(Math.max(0, i - 2), i + 3).map((l) => `  database  | ${l}`)].join('\n');
    }
  }
  return '';
}

async function compare(t: Test, file: string, actual: string): Promise<void> {
  if (WRITE) {
    fs.writeFileSync(file, actual);
    t.pass(`wrote ${path.relative(PROJECT_DIR, file)}`);
    return;
  }
  const committed = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  const diff = firstDifference(committed, actual);
  t.equal(diff, '', `${path.relative(PROJECT_DIR, file)} is up to date (if the change is deliberate, run: npm run snapshots)`);
}

t.test('the migrated schema matches sql/schema-snapshot.sql', async (t) => {
  const db = await createTestDatabase(t, 2);
  await compare(t, FILES.schema, await dumpSchema(db.pool));
});

t.test('the printed GraphQL schema matches graphql/schema.graphql', async (t) => {
  const db = await createTestDatabase(t, 4);
  const schema = await graphqlSchemaOf(t, db.url);
  await compare(t, FILES.graphql, `${printSchema(lexicographicSortSchema(schema))}\n`);
});
