/**
 * Property tests (fast-check) of the event intake: whatever the body, the parser returns events or
 * refuses with an EventFormatError (never another exception); every identity it returns is canonical
 * and cannot escape a scope root; S3 keys round-trip through their URL encoding; every timestamp it
 * accepts is one PostgreSQL stores as the same instant, and every real one is accepted; the identity
 * step can be replaced, and what it returns is still checked; and a real server answers arbitrary
 * bodies with 2xx or a 4xx that records nothing, never a 5xx (test/monitor-intake-fuzz.test.ts fuzzes
 * every field of every provider format).
 */
import fc from 'fast-check';
import t from 'tap';
import { integrationCreate } from '../src/db/sql/catalog.ts';
import { eventSecretEnsure } from '../src/db/sql/monitor.ts';
import { normalizeRelativePath } from '../src/connectors/identity.ts';
import { canonicalTimestamp, EventFormatError, MAX_IDENTITY_BYTES, parseEventBody, type IdentityOf } from '../src/monitor/events/index.ts';
import { createTestDatabase } from './helpers/db.ts';
import { apiServer } from './helpers/graphql.ts';
import { seedFastCheck } from './helpers/seed.ts';

// Every property of this file draws from one seed (DSX_TEST_SEED, else a fresh one), printed on failure.
seedFastCheck();

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

// Components in and out of range, so that both sides of every limit are tried.
const timestampParts = fc.record({
  year: fc.oneof(fc.integer({ min: 0, max: 9999 }), fc.constantFrom(0, 1, 1900, 2000, 2024, 9999)),
  month: fc.oneof(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 0, max: 99 })),
  day: fc.oneof(fc.integer({ min: 1, max: 31 }), fc.constantFrom(0, 28, 29, 30, 31, 32, 99)),
  hour: fc.oneof(fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 99 })),
  minute: fc.oneof(fc.integer({ min: 0, max: 59 }), fc.integer({ min: 0, max: 99 })),
  second: fc.oneof(fc.integer({ min: 0, max: 59 }), fc.integer({ min: 0, max: 99 })),
  fraction: fc.oneof(fc.constant(''), fc.stringMatching(/^\.\d{1,12}$/)),
  zone: fc.oneof(
    fc.constantFrom('Z', 'z'),
    fc.record({ sign: fc.constantFrom('+', '-'), h: fc.integer({ min: 0, max: 16 }), m: fc.oneof(fc.integer({ min: 0, max: 59 }), fc.constant(60)) })
      .map(({ sign, h, m }) => `${sign}${String(h).padStart(2, '0')}:${String(m).padStart(2, '0')}`),
  ),
  separator: fc.constantFrom('T', 't'),
});

function daysIn(year: number, month: number): number {
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  return [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1] ?? 0;
}

t.test('timestamps: accepted exactly when every part is in range, and then stored by PostgreSQL as the same instant', async (t) => {
  const db = await createTestDatabase(t, 2);
  const two = (n: number) => String(n).padStart(2, '0');
  let accepted = 0;
  let refused = 0;
  await fc.assert(
    fc.asyncProperty(timestampParts, async (p) => {
      const text = `${String(p.year).padStart(4, '0')}-${two(p.month)}-${two(p.day)}${p.separator}${two(p.hour)}:${two(p.minute)}:${two(p.second)}${p.fraction}${p.zone}`;
      const zoneOk = /^[Zz]$/.test(p.zone) || (Number(p.zone.slice(1, 3)) <= 15 && Number(p.zone.slice(4)) <= 59);
      const inRange = p.year >= 1 && p.month >= 1 && p.month <= 12 && p.day >= 1 && p.day <= daysIn(p.year, p.month) &&
        p.hour <= 23 && p.minute <= 59 && p.second <= 59 && p.fraction.length <= 10 && zoneOk;
      const r = canonicalTimestamp(text);
      if (!('value' in r)) {
        refused++;
        return !inRange && r.error.length > 0;
      }
      accepted++;
      if (!inRange) return false;
      // What the instant is, computed from the parts (setUTCFullYear: Date.UTC maps years 0-99 to 19xx).
      const d = new Date(0);
      d.setUTCFullYear(p.year, p.month - 1, p.day);
      d.setUTCHours(p.hour, p.minute, p.second, 0);
      const offsetMin = /^[Zz]$/.test(p.zone) ? 0 : (p.zone[0] === '-' ? -1 : 1) * (Number(p.zone.slice(1, 3)) * 60 + Number(p.zone.slice(4)));
      // In nanoseconds, exactly (BigInt): PostgreSQL keeps microseconds, rounding the rest.
      const fractionNs = BigInt((p.fraction.slice(1) + '000000000').slice(0, 9));
      const expectedNs = BigInt(d.getTime() - offsetMin * 60_000) * 1_000_000n + fractionNs;
      const { rows } = await db.pool.query('select trunc(extract(epoch from $1::timestamptz) * 1000000)::text as us', [r.value]);
      const diff = BigInt(rows[0].us) * 1000n - expectedNs;
      return diff > -1000n && diff < 1000n;
    }),
    { numRuns: 600 },
  );
  t.ok(accepted > 50 && refused > 50, `${accepted} accepted, ${refused} refused`);
});

t.test('timestamps as storage services and JavaScript write them are accepted unchanged', async (t) => {
  fc.assert(
    fc.property(fc.date({ min: new Date('0001-01-01T00:00:00Z'), max: new Date('9999-12-31T23:59:59.999Z'), noInvalidDate: true }), (d) => {
      const iso = d.toISOString();
      const r = canonicalTimestamp(iso);
      return 'value' in r && r.value === iso;
    }),
    { numRuns: 500 },
  );
  for (const sample of ['2026-11-28T10:00:00.000Z', '2021-11-12T00:00:00Z', '2017-06-26T18:41:00.9584103Z', '2026-11-28T11:00:00+01:00']) {
    t.same(canonicalTimestamp(sample), { value: sample }, sample);
  }
  t.same(canonicalTimestamp('2026-11-28t10:00:00z'), { value: '2026-11-28T10:00:00Z' }, 'lower-case t and z (RFC 3339) are written in upper case');
  for (const [bad, why] of [
    ['+200000-01-01T00:00:00Z', /RFC 3339/], ['2026-13-45T00:00:00Z', /month 13/], ['2026-02-29T00:00:00Z', /day 29/], ['hello 2', /RFC 3339/],
    ['2026-11-28T10:00:00', /time zone/], ['2026-11-28T10:00:00+23:00', /offset/], ['0000-01-01T00:00:00Z', /year 0000/],
  ] as const) {
    const r = canonicalTimestamp(bad);
    t.ok('error' in r && why.test(r.error), `${bad} refused: ${'error' in r ? r.error : 'accepted'}`);
  }
});

// ---- The identity step -----------------------------------------------------------------------------

const verbatim: IdentityOf = (raw) => raw;

/** One body per provider format naming the object `name` (S3 keys URL-encoded as S3 sends them). */
function bodiesNaming(name: string): [string, unknown][] {
  const key = encodeURIComponent(name).replace(/%20/g, '+').replace(/%2F/g, '/');
  const record = { eventName: 'ObjectCreated:Put', s3: { bucket: { name: 'b' }, object: { key, sequencer: '01' } } };
  return [
    ['s3', { Records: [record] }],
    ['sns', { Type: 'Notification', MessageId: 'm', TopicArn: 'arn:aws:sns:us-east-1:1:t', Message: JSON.stringify({ Records: [record] }) }],
    ['eventbridge', { id: 'e', 'detail-type': 'Object Created', source: 'aws.s3', detail: { bucket: { name: 'b' }, object: { key } } }],
    ['eventgrid', [{ id: 'g', eventType: 'Microsoft.Storage.BlobCreated', subject: `/blobServices/default/containers/c/blobs/${name}` }]],
    ['cloudevents', [{ id: 'c', specversion: '1.0', type: 'Microsoft.Storage.BlobCreated', subject: `/blobServices/default/containers/c/blobs/${name}` }]],
    ['generic', { objectIdentity: name, eventType: 'created' }],
  ];
}

t.test('the identity step is a parameter: a verbatim step keeps names the default refuses or changes, in every format', async (t) => {
  for (const name of ['a//b.txt', '/leading.txt', 'dir/../up.txt', './dot.txt', 'trailing/']) {
    for (const [format, body] of bodiesNaming(name)) {
      const r = parseEventBody(body, { identityOf: verbatim });
      t.equal(r.kind === 'events' ? r.events[0]!.object_identity : null, name, `${format}: ${JSON.stringify(name)} kept verbatim`);
      const byDefault = parseOrRefuse(body);
      t.not(byDefault !== 'refused' && byDefault.kind === 'events' ? byDefault.events[0]!.object_identity : 'refused', name, `${format}: the default canonicalizes or refuses it`);
    }
  }
  const seen: [string, string][] = [];
  parseEventBody({ events: [{ objectIdentity: 'x', eventType: 'created' }, { objectIdentity: 'y', eventType: 'deleted' }] }, { identityOf: (raw, where) => (seen.push([raw, where]), raw) });
  t.same(seen, [['x', 'events.0.objectIdentity'], ['y', 'events.1.objectIdentity']], 'the step gets the raw name and the field it came from');
});

t.test('whatever the identity step returns is still checked: empty, too long, or unstorable is refused, naming the field', async (t) => {
  const body = { Records: [{ eventName: 'ObjectCreated:Put', s3: { bucket: { name: 'b' }, object: { key: 'k' } } }] };
  for (const [returned, why] of [['', /names no object/], ['x'.repeat(MAX_IDENTITY_BYTES + 1), /longer than/], ['a\0b', /NUL/], ['a\ud800b', /surrogate/]] as const) {
    t.throws(() => parseEventBody(body, { identityOf: () => returned }), { name: 'EventFormatError', message: new RegExp(`^Records\\.0\\.s3\\.object\\.key: .*${why.source}`) }, `${JSON.stringify(returned.slice(0, 8))} refused`);
  }
  t.throws(() => parseEventBody({ objectIdentity: 'x', eventType: 'created' }, { identityOf: (_raw, where) => { throw new EventFormatError(`${where}: not for this integration`); } }), /objectIdentity: not for this integration/, "the step's own refusal reaches the sender");
});
