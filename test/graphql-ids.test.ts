/**
 * One id type in the whole API: every row id, as a field or as an argument, is a BigInt (a string in
 * JSON), so what `rowId` returns can be passed back anywhere as it is. Our own fields (startFullScan,
 * cancelFullScan, the subscriptions) take it like the reflected ones, check it, and say what an id is.
 */
import t from 'tap';
import { getNamedType, isInputObjectType, isObjectType, type GraphQLNamedType } from 'postgraphile/graphql';
import { createTestDatabase } from './helpers/db.ts';
import { apiServer, graphqlSchemaOf, operation, token } from './helpers/graphql.ts';
import { syntheticScope } from './helpers/pipeline.ts';

const NUMBER_SCALARS = new Set(['Int', 'Float', 'BigInt', 'BigFloat']);

/** `rowId` and every `<thing>Id`: the names the API gives row ids. */
const isIdName = (name: string) => name === 'rowId' || /[a-z]Id$/.test(name);

t.test('every row id in the schema, field or argument, is a BigInt', async (t) => {
  const db = await createTestDatabase(t, 2);
  const schema = await graphqlSchemaOf(t, db.url);
  const ids = new Map<string, string>();
  const note = (where: string, type: GraphQLNamedType) => {
    if (NUMBER_SCALARS.has(type.name)) ids.set(where, type.name);
  };
  for (const type of Object.values(schema.getTypeMap())) {
    if (type.name.startsWith('__')) continue;
    if (isObjectType(type)) {
      for (const field of Object.values(type.getFields())) {
        if (isIdName(field.name)) note(`${type.name}.${field.name}`, getNamedType(field.type));
        for (const arg of field.args) if (isIdName(arg.name)) note(`${type.name}.${field.name}(${arg.name})`, getNamedType(arg.type));
      }
    } else if (isInputObjectType(type)) {
      for (const field of Object.values(type.getFields())) if (isIdName(field.name)) note(`${type.name}.${field.name}`, getNamedType(field.type));
    }
  }
  // The fields our plugins add are among those checked (they were Int before).
  for (const own of ['StartFullScanInput.scopeId', 'CancelFullScanInput.fullScanId', 'FullScanProgressEvent.fullScanId',
    'Subscription.fullScanProgress(fullScanId)', 'Subscription.scanResults(scopeId)', 'Query.verifyFullScan(fullScanId)', 'FullScan.rowId']) {
    t.ok(ids.has(own), `${own} is a numeric id the check sees`);
  }
  const others = [...ids].filter(([, type]) => type !== 'BigInt').map(([where, type]) => `${where}: ${type}`);
  t.same(others, [], `all ${ids.size} numeric ids are BigInt`);
});

t.test('what rowId returns goes back into every id argument, as a string or as a JSON number', async (t) => {
  const db = await createTestDatabase(t);
  const api = await apiServer(t, db.url);
  const operator = await token('operator');
  const scope = await syntheticScope(db.pool, { objects: 10 });

  const byName = await api.query(operation('scope-by-name'), { name: scope.name }, operator);
  const scopeId = byName.data.scopeByName.rowId;
  t.equal(scopeId, String(scope.id), 'rowId is a string');
  const started = await api.query(operation('start-full-scan'), { scopeId }, operator);
  t.notOk(started.errors, JSON.stringify(started.errors));
  const fullScanId = started.data.startFullScan.fullScan.rowId;
  t.equal(typeof fullScanId, 'string');
  const asNumber = await api.query(operation('start-full-scan'), { scopeId: Number(scopeId) }, operator);
  t.same(asNumber.data?.startFullScan, { alreadyActive: true, fullScan: { rowId: fullScanId, status: 'queued', scopeId, scope: { name: scope.name } } },
    'a JSON number in a variable is the same id (the BigInt scalar reads variables as "" + value)');
  const inline = await api.query(`mutation { startFullScan(input: {scopeId: "${scopeId}"}) { fullScan { rowId } } }`, {}, operator);
  t.same(inline.data?.startFullScan, { fullScan: { rowId: fullScanId } }, 'a string literal in the document works');

  const sub = api.subscribe(operation('full-scan-progress'), { fullScanId }, operator);
  await sub.firstEvent;
  const canceled = await api.query(operation('cancel-full-scan'), { fullScanId, mode: 'INTERRUPT' }, operator);
  t.match(canceled.data?.cancelFullScan, { fullScan: { rowId: fullScanId, status: 'canceled' } }, JSON.stringify(canceled.errors));
  const events = (await sub.done).map((e) => e.data.fullScanProgress);
  t.ok(events.length >= 2);
  t.ok(events.every((e) => e.fullScanId === fullScanId), 'the progress events carry the id as rowId spells it');
  t.match(events.at(-1), { event: 'finished', status: 'canceled' });
  const verify = await api.query(`query($id: BigInt!) { verifyFullScan(fullScanId: $id) { totalCount } }`, { id: fullScanId }, operator);
  t.notOk(verify.errors, 'a reflected function takes the same id');
});

t.test('a bad id is refused with what an id looks like, and an id beyond 32 bits is just an id', async (t) => {
  const db = await createTestDatabase(t);
  const api = await apiServer(t, db.url);
  const operator = await token('operator');
  await syntheticScope(db.pool, { objects: 10 });
  const scans = async () => (await db.pool.query('select count(*)::int as n from dsx.full_scans')).rows[0].n as number;

  const literal = await api.query('mutation { startFullScan(input: {scopeId: 1}) { alreadyActive } }', {}, operator);
  t.match(literal.errors, [{ message: /BigInt can only parse string values/ }], 'an Int literal is refused by the scalar: ids are written "1"');
  for (const bad of ['abc', '1.5', '-1', '0', ' 1', '9223372036854775808', 1.5]) {
    const r = await api.query(operation('start-full-scan'), { scopeId: bad }, operator);
    t.match(r.errors, [{ message: /^scopeId must be a row id: a positive integer up to 9223372036854775807, as rowId returns it \(e\.g\. "42"\); got /, extensions: { code: '22023' } }],
      `scopeId ${JSON.stringify(bad)} is refused`);
  }
  t.equal(await scans(), 0, 'nothing was started');
  const reflected = await api.query('query($id: BigInt!) { scopeByRowId(rowId: $id) { name } }', { id: 'abc' }, operator);
  t.match(reflected.errors, [{ message: /invalid input syntax for type bigint: "abc"/, extensions: { code: '22P02' } }], 'a reflected field leaves the check to PostgreSQL');
  const cancel = await api.query(operation('cancel-full-scan'), { fullScanId: 'x', mode: 'DRAIN' }, operator);
  t.match(cancel.errors, [{ message: /^fullScanId must be a row id/ }]);

  const farScope = await api.query(operation('start-full-scan'), { scopeId: '9999999999' }, operator);
  t.match(farScope.errors, [{ message: 'unknown scope id 9999999999', extensions: { code: 'P0002' } }], 'beyond 2^31 the database answers');
  const farScan = await api.query(operation('cancel-full-scan'), { fullScanId: '9223372036854775807', mode: 'DRAIN' }, operator);
  t.match(farScan.errors, [{ message: 'unknown full scan id 9223372036854775807' }]);
  await t.rejects(api.subscribe(operation('full-scan-progress'), { fullScanId: '9999999999' }, operator).done, { message: /unknown full scan id 9999999999/ });
  const badTopic = await api.subscribe(operation('watch-detections'), { scopeId: 'all' }, operator).done;
  t.match(badTopic, [{ errors: [{ message: /^scopeId must be a row id/, extensions: { code: '22023' } }] }], 'a subscription to a bad id ends with the error, before any LISTEN');
});
