/**
 * Property tests (fast-check) of the event intake: whatever the body, the parser returns events or
 * refuses with an EventFormatError (never another exception); every identity it returns is canonical
 * and cannot escape a scope root; S3 keys round-trip through their URL encoding; and a real server
 * answers arbitrary bodies with 2xx or a 4xx that records nothing, never a 5xx.
 */
import fc from 'fast-check';
import t from 'tap';
import { integrationCreate } from '../src/db/sql/catalog.ts';
import { eventSecretEnsure } from '../src/db/sql/monitor.ts';
import { normalizeRelativePath } from '../src/connectors/identity.ts';
import { EventFormatError, MAX_IDENTITY_BYTES, parseEventBody } from '../src/monitor/events/index.ts';
import { createTestDatabase } from './helpers/db.ts';
import { apiServer } from './helpers/graphql.ts';

/** Identities the parser hands on must be canonical, relative and free of `..`. */
function canonical(id: string): boolean {
  return (
    id.length > 0 &&
    !id.startsWith('/') &&
    !id.includes('\0') &&
    !id.split('/').some((s) => s === '' || s === '.' || s === '..') &&
    Buffer.byteLength(id) <= MAX_IDENTITY_BYTES
  );
}

function parseOrRefuse(body: unknown): ReturnType<typeof parseEventBody> | 'refused' {
  try {
    return parseEventBody(body);
  } catch (err) {
    if (err instanceof EventFormatError) return 'refused';
    throw err; // anything else is a bug: the property fails
  }
}

// Path-like strings with the characters that matter: separators, dots, NUL, backslashes, unicode.
const pathish = fc
  .array(fc.oneof(fc.constantFrom('/', '.', '..', '\0', '\\', '%2e', '%2F', 'é', '😀', ' ', '\n'), fc.string({ maxLength: 8 })), { maxLength: 12 })
  .map((parts) => parts.join(''));

t.test('arbitrary JSON bodies: events or a clear refusal, never a crash', async (t) => {
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 4 }), (body) => {
      const r = parseOrRefuse(body);
      if (r !== 'refused' && r.kind === 'events') return r.events.every((e) => canonical(e.object_identity));
      return true;
    }),
    { numRuns: 500 },
  );
  t.pass('500 arbitrary bodies');
});

t.test('mutated real-shaped bodies: events or a clear refusal', async (t) => {
  const s3 = (key: unknown, name: unknown) => ({ Records: [{ eventName: name, eventTime: '2026-11-28T10:00:00Z', s3: { bucket: { name: 'b' }, object: { key, size: 1 } } }] });
  const grid = (subject: unknown, type: unknown) => [{ id: 'x', eventType: type, subject, data: { contentLength: 3 } }];
  const generic = (id: unknown, type: unknown) => ({ objectIdentity: id, eventType: type });
  const anything = fc.oneof(pathish, fc.jsonValue({ maxDepth: 2 }));
  fc.assert(
    fc.property(
      fc.constantFrom(s3, grid, generic),
      anything,
      fc.oneof(fc.constantFrom('ObjectCreated:Put', 'ObjectRemoved:Delete', 'Microsoft.Storage.BlobCreated', 'created', 'deleted'), fc.jsonValue({ maxDepth: 1 })),
      (make, a, b) => {
        const r = parseOrRefuse(make(a as never, b as never));
        return r === 'refused' || r.kind !== 'events' || r.events.every((e) => canonical(e.object_identity));
      },
    ),
    { numRuns: 1000 },
  );
  t.pass('1000 mutated bodies');
});

t.test('generic identities: canonical form of the input, or refused; never outside the root', async (t) => {
  fc.assert(
    fc.property(pathish, (raw) => {
      const r = parseOrRefuse({ objectIdentity: raw, eventType: 'created' });
      let expected: string | null;
      try {
        expected = normalizeRelativePath(raw);
      } catch {
        expected = null;
      }
      if (r === 'refused') return expected === null || expected === '' || raw.length === 0 || Buffer.byteLength(raw) > MAX_IDENTITY_BYTES;
      if (r.kind !== 'events') return false;
      return r.events.length === 1 && r.events[0]!.object_identity === expected && canonical(expected!);
    }),
    { numRuns: 2000 },
  );
  t.pass('2000 identities');
});

t.test('S3 keys round-trip through URL encoding (+ for spaces)', async (t) => {
  fc.assert(
    fc.property(fc.string({ minLength: 1, maxLength: 60, unit: 'grapheme' }), (key) => {
      const encoded = encodeURIComponent(key).replace(/%20/g, '+').replace(/%2F/g, '/');
      const r = parseOrRefuse({ Records: [{ eventName: 'ObjectCreated:Put', s3: { bucket: { name: 'b' }, object: { key: encoded } } }] });
      let expected: string | null;
      try {
        expected = normalizeRelativePath(key);
      } catch {
        expected = null;
      }
      if (expected === null || expected === '') return r === 'refused';
      return r !== 'refused' && r.kind === 'events' && r.events[0]!.object_identity === expected;
    }),
    { numRuns: 1000 },
  );
  t.pass('1000 keys');
});

t.test('a real server answers arbitrary bodies with 2xx or a 4xx that records nothing', async (t) => {
  const db = await createTestDatabase(t);
  const integ = await integrationCreate(db.pool, { name: 'p', kind: 'synthetic', settings: { objects: 10 } });
  const secret = 'property-test-secret-000000';
  await eventSecretEnsure(db.pool, integ.id, false, secret);
  const api = await apiServer(t, db.url);
  const bodies = fc.oneof(
    fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
    fc.string({ maxLength: 200 }),
    fc.record({ objectIdentity: pathish, eventType: fc.constantFrom('created', 'modified', 'deleted', 'bogus') }).map((v) => JSON.stringify(v)),
  );
  let accepted = 0;
  await fc.assert(
    fc.asyncProperty(bodies, async (body) => {
      const before = (await db.pool.query('select count(*)::int as n from dsx.monitor_events')).rows[0].n;
      const res = await fetch(`${api.url}/events/${integ.id}`, { method: 'POST', headers: { authorization: `Bearer ${secret}` }, body });
      const json = (await res.json()) as { error?: string; accepted?: number };
      const after = (await db.pool.query('select count(*)::int as n from dsx.monitor_events')).rows[0].n;
      if (res.status === 202) {
        accepted++;
        return after === before + json.accepted!;
      }
      if (res.status === 200) return after === before;
      return res.status >= 400 && res.status < 500 && typeof json.error === 'string' && json.error.length > 0 && after === before;
    }),
    { numRuns: 150 },
  );
  t.pass(`150 bodies (${accepted} accepted)`);
});
