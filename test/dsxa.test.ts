/**
 * DSXA client against the emulator (and a few non-DSXA servers), over real HTTP on 127.0.0.1: verdicts,
 * auth, protected entity, latency and capacity, the client's in-flight limit, injected faults and how
 * each error is classified.
 */
import crypto from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import { Readable } from 'node:stream';
import t, { type Test } from 'tap';
import { DsxaClient, DsxaError } from '../src/dsxa/client.ts';
import { StreamInspector } from '../src/dsxa/detect.ts';
import { startEmulator, type EmulatorOptions } from '../src/dsxa/emulator.ts';
import { EICAR, encryptedZip, plainZip } from '../src/testing/fixtures.ts';

async function emulator(t: Test, opts: EmulatorOptions = {}) {
  const emu = await startEmulator({ port: 0, ...opts });
  t.teardown(() => emu.close());
  return emu;
}

function client(t: Test, url: string, opts: Partial<ConstructorParameters<typeof DsxaClient>[0]> = {}) {
  const c = new DsxaClient({ url, ...opts });
  t.teardown(() => c.close());
  return c;
}

/** A plain HTTP server answering every request with `handler`. */
async function server(t: Test, handler: http.RequestListener) {
  const srv = http.createServer(handler);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => {
    srv.close(() => r());
    srv.closeAllConnections();
  }));
  return `http://127.0.0.1:${(srv.address() as net.AddressInfo).port}`;
}

/** A stream of `size` bytes in `chunk`-byte pieces, with `insert` written at `offset`. */
function bigStream(size: number, chunk: number, insert: Buffer, offset: number): Readable {
  let pos = 0;
  return new Readable({
    read() {
      if (pos >= size) return void this.push(null);
      const piece = Buffer.alloc(Math.min(chunk, size - pos), 0x41);
      const from = Math.max(offset, pos);
      const to = Math.min(offset + insert.length, pos + piece.length);
      if (from < to) insert.copy(piece, from - pos, from - offset, to - offset);
      pos += piece.length;
      this.push(piece);
    },
  });
}

async function rejection(t: Test, p: Promise<unknown>): Promise<DsxaError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  t.type(err, DsxaError);
  return err as DsxaError;
}

t.test('StreamInspector finds EICAR split at every position', async (t) => {
  const data = Buffer.concat([Buffer.alloc(100, 0x20), Buffer.from(EICAR, 'latin1'), Buffer.alloc(100, 0x20)]);
  for (let cut = 0; cut <= data.length; cut++) {
    const i = new StreamInspector();
    i.update(data.subarray(0, cut));
    i.update(data.subarray(cut));
    if (!i.finish().eicar) t.fail(`missed EICAR split at ${cut}`);
  }
  // One byte at a time.
  const bytewise = new StreamInspector();
  for (const b of data) bytewise.update(Buffer.from([b]));
  t.ok(bytewise.finish().eicar);
  // An incomplete EICAR string is not EICAR.
  const partial = new StreamInspector();
  partial.update(Buffer.from(EICAR.slice(0, -1), 'latin1'));
  t.notOk(partial.finish().eicar);
});

t.test('verdicts', async (t) => {
  const emu = await emulator(t);
  const dsxa = client(t, emu.url);

  t.test('EICAR is malicious', async (t) => {
    t.equal(Buffer.byteLength(EICAR), 68);
    const r = await dsxa.scanBinary(Buffer.from(EICAR, 'latin1'), { metadata: 'who=test' });
    t.equal(r.httpStatus, 200);
    t.equal(r.response.verdict, 'Malicious');
    t.same(r.response.verdict_details, { event_description: 'File identified as malicious', threat_type: 'VIRUS' });
    t.match(r.response.scan_guid, /^[0-9a-f]{32}$/);
    t.equal(r.response.file_info?.file_size_in_bytes, 68);
    t.equal(r.response.file_info?.file_hash, crypto.createHash('sha256').update(EICAR).digest('hex'));
    t.equal(r.response.file_info?.file_type, 'TextFileType');
    t.equal(r.response.protected_entity, 1);
    t.equal(r.response['X-Custom-Metadata'], 'who=test');
    t.type(r.response.scan_duration_in_microseconds, 'number');
    const unicode = await dsxa.scanBinary(Buffer.from('x'), { metadata: 'key=日本語/файл\n.txt' });
    t.equal(unicode.response['X-Custom-Metadata'], `key=${encodeURIComponent('日本語')}/${encodeURIComponent('файл\n')}.txt`, 'non-ASCII metadata is %-encoded');
    t.ok(!Number.isNaN(Date.parse(r.response.last_update_time!)));
    t.ok(r.durationMs >= 0);
  });

  t.test('EICAR across a 64 KiB chunk boundary in a > 1 MiB stream is malicious', async (t) => {
    const size = 1024 * 1024 + 12345;
    const offset = 8 * 65536 - 30;
    const r = await dsxa.scanBinary(bigStream(size, 65536, Buffer.from(EICAR, 'latin1'), offset), { size });
    t.equal(r.response.verdict, 'Malicious');
    t.equal(r.response.file_info?.file_size_in_bytes, size);
    // Same stream without a declared size (chunked upload).
    const chunked = await dsxa.scanBinary(bigStream(size, 65536, Buffer.from(EICAR, 'latin1'), offset));
    t.equal(chunked.response.verdict, 'Malicious');
    const clean = await dsxa.scanBinary(bigStream(size, 65536, Buffer.alloc(0), 0), { size });
    t.equal(clean.response.verdict, 'Benign');
  });

  t.test('encrypted ZIP is not scanned', async (t) => {
    const r = await dsxa.scanBinary(encryptedZip());
    t.equal(r.response.verdict, 'Not Scanned');
    t.equal(r.response.verdict_details?.reason, 'encrypted file');
    t.equal(r.response.file_info?.file_type, 'ZIPFileType');
  });

  t.test('plain ZIP is benign', async (t) => {
    const r = await dsxa.scanBinary(plainZip());
    t.equal(r.response.verdict, 'Benign');
    t.same(r.response.verdict_details, { event_description: 'File identified as benign' });
    t.equal(r.response.file_info?.file_type, 'ZIPFileType');
  });

  t.test('empty file is benign', async (t) => {
    const r = await dsxa.scanBinary(Buffer.alloc(0));
    t.equal(r.response.verdict, 'Benign');
    t.equal(r.response.file_info?.file_size_in_bytes, 0);
    const s = await dsxa.scanBinary(Readable.from([]), { size: 0 });
    t.equal(s.response.verdict, 'Benign');
  });

  t.test('PDF file type', async (t) => {
    const r = await dsxa.scanBinary(Buffer.from('%PDF-1.7\n%\xe2\xe3\xcf\xd3\n', 'latin1'));
    t.equal(r.response.file_info?.file_type, 'PDFFileType');
  });

  t.test('base64 endpoint', async (t) => {
    const body = Buffer.from(EICAR, 'latin1').toString('base64').replace(/(.{20})/g, '$1\n');
    const res = await fetch(`${emu.url}/scan/base64/v2`, { method: 'POST', body });
    const json = (await res.json()) as { verdict: string; file_info: { file_size_in_bytes: number } };
    t.equal(json.verdict, 'Malicious');
    t.equal(json.file_info.file_size_in_bytes, 68);
  });

  t.test('healthz and unknown paths', async (t) => {
    const h = await fetch(`${emu.url}/healthz`);
    t.equal(h.status, 200);
    t.same(await h.json(), { status: 'ok' });
    const n = await fetch(`${emu.url}/scan/nothing`);
    t.equal(n.status, 404);
    t.match(await n.json(), { error: 'Not Found' });
  });

  t.test('stats count verdicts', async (t) => {
    const s = emu.stats();
    t.ok(s.requests >= 10);
    t.ok(s.verdicts.Malicious! >= 3);
    t.ok(s.verdicts['Not Scanned']! >= 1);
    t.equal(s.inFlight, 0);
    t.equal(s.queued, 0);
  });
});

t.test('file over maxFileSize is not scanned', async (t) => {
  const emu = await emulator(t, { maxFileSize: 1000 });
  const dsxa = client(t, emu.url);
  const r = await dsxa.scanBinary(Buffer.alloc(1001));
  t.equal(r.httpStatus, 200);
  t.equal(r.response.verdict, 'Not Scanned');
  t.equal(r.response.verdict_details?.reason, 'File Size Too Large');
  t.equal((await dsxa.scanBinary(Buffer.alloc(1000))).response.verdict, 'Benign');
});

t.test('token', async (t) => {
  const emu = await emulator(t, { token: 's3cret-token' });
  for (const [name, token] of [
    ['missing', null],
    ['wrong', 'nope'],
  ] as const) {
    const err = await rejection(t, client(t, emu.url, { token }).scanBinary(Buffer.from('x')));
    t.equal(err.kind, 'auth', name);
    t.equal(err.retryable, false);
    t.equal(err.httpStatus, 401);
    t.match(err.message, emu.url);
    t.notMatch(err.message, 's3cret');
  }
  const ok = await client(t, emu.url, { token: 's3cret-token' }).scanBinary(Buffer.from('x'));
  t.equal(ok.response.verdict, 'Benign');
  // Either header suffices (the SDKs send both).
  const res = await fetch(`${emu.url}/scan/binary/v2`, { method: 'POST', headers: { AUTH: 's3cret-token' }, body: 'x' });
  t.equal(res.status, 200);
  await res.arrayBuffer();
  t.equal(emu.stats().rejected, 2);
});

t.test('invalid protected_entity is a 400 result, not an error', async (t) => {
  const emu = await emulator(t);
  for (const pe of [0, -3, 1.5]) {
    const r = await client(t, emu.url, { protectedEntity: pe }).scanBinary(Buffer.from(EICAR));
    t.equal(r.httpStatus, 400, `protected_entity ${pe}`);
    t.equal(r.response.verdict, 'Not Scanned');
    t.equal(r.response.verdict_details?.reason, 'Invalid protected entity');
  }
  const r = await client(t, emu.url, { protectedEntity: 7 }).scanBinary(Buffer.from('x'));
  t.equal(r.httpStatus, 200);
  t.equal(r.response.protected_entity, 7);
});

t.test('latency and capacity', async (t) => {
  const emu = await emulator(t, { capacity: 2, latencyMs: 100 });
  const dsxa = client(t, emu.url);
  const t0 = performance.now();
  const results = await Promise.all(Array.from({ length: 6 }, (_, i) => dsxa.scanBinary(Buffer.from(`file ${i}`))));
  const elapsed = performance.now() - t0;
  t.equal(results.filter((r) => r.response.verdict === 'Benign').length, 6);
  t.ok(elapsed >= 290, `6 scans, 2 at a time, 100 ms each: ${elapsed.toFixed(0)} ms`);
  const s = emu.stats();
  t.equal(s.maxConcurrent, 2);
  t.equal(s.scans, 6);
  t.equal(s.inFlight, 0);
  t.equal(s.queued, 0);
});

t.test('queued requests are counted and a larger capacity lets them in', async (t) => {
  // faultOn is asked once per arriving request, just before it takes or queues for a capacity slot.
  let arrivals = 0;
  let allArrived!: () => void;
  const arrived = new Promise<void>((resolve) => (allArrived = resolve));
  const emu = await emulator(t, { capacity: 1, latencyMs: 300, faultOn: () => (++arrivals === 4 && setImmediate(allArrived), null) });
  const dsxa = client(t, emu.url);
  const all = Promise.all(Array.from({ length: 4 }, () => dsxa.scanBinary(Buffer.from('q'))));
  await arrived;
  t.equal(emu.stats().inFlight, 1);
  t.equal(emu.stats().queued, 3);
  emu.setOptions({ capacity: 4 });
  t.equal(emu.stats().queued, 0);
  t.equal(emu.stats().inFlight, 4);
  await all;
  t.equal(emu.stats().maxConcurrent, 4);
});

t.test('client maxInFlight limits concurrent requests', async (t) => {
  const emu = await emulator(t, { capacity: 64, latencyMs: 50 });
  const dsxa = client(t, emu.url, { maxInFlight: 3 });
  const all = Promise.all(Array.from({ length: 9 }, () => dsxa.scanBinary(Buffer.from('x'))));
  await new Promise((r) => setImmediate(r));
  t.equal(dsxa.inFlight, 3);
  t.equal(dsxa.waiting, 6);
  await all;
  t.equal(emu.stats().maxConcurrent, 3);
  t.equal(emu.stats().scans, 9);
  t.equal(dsxa.inFlight, 0);
});

t.test('caller abort while waiting for a slot or in flight', async (t) => {
  const emu = await emulator(t, { latencyMs: 500 });
  const dsxa = client(t, emu.url, { maxInFlight: 1 });
  const first = new AbortController();
  const second = new AbortController();
  const p1 = dsxa.scanBinary(Buffer.from('a'), { signal: first.signal });
  const p2 = dsxa.scanBinary(Buffer.from('b'), { signal: second.signal });
  second.abort(new Error('stop waiting'));
  first.abort(new Error('stop scanning'));
  await t.rejects(p2, { message: 'stop waiting' });
  await t.rejects(p1, { message: 'stop scanning' });
  t.equal(dsxa.inFlight, 0);
  t.equal(dsxa.waiting, 0);
});

t.test('faults', async (t) => {
  t.test('HTTP 500 and 503 are unavailable and retryable', async (t) => {
    for (const kind of ['500', '503'] as const) {
      const emu = await emulator(t, { failRate: 1, faultKinds: [kind] });
      const err = await rejection(t, client(t, emu.url).scanBinary(Buffer.from('x')));
      t.equal(err.kind, 'unavailable');
      t.equal(err.retryable, true);
      t.equal(err.httpStatus, Number(kind));
      t.match(err.message, emu.url);
      t.same(emu.stats().faults, { [kind]: 1 });
    }
  });

  t.test('a hanging request times out, retryable', async (t) => {
    const emu = await emulator(t, { failRate: 1, faultKinds: ['hang'] });
    const dsxa = client(t, emu.url, { timeoutMs: 200 });
    const t0 = performance.now();
    const err = await rejection(t, dsxa.scanBinary(Buffer.from(EICAR)));
    t.ok(performance.now() - t0 >= 190);
    t.equal(err.kind, 'timeout');
    t.equal(err.retryable, true);
    t.match(err.message, /200 ms/);
    // Also with a streamed body.
    const err2 = await rejection(t, dsxa.scanBinary(Readable.from([Buffer.from('abc')])));
    t.equal(err2.kind, 'timeout');
  });

  t.test('a hanging request is destroyed by close()', async (t) => {
    let hung!: () => void;
    const hanging = new Promise<void>((resolve) => (hung = resolve));
    const emu = await startEmulator({ faultOn: () => (hung(), 'hang') });
    const dsxa = client(t, emu.url, { timeoutMs: 10_000 });
    const p = dsxa.scanBinary(Buffer.from('x'));
    await hanging;
    await emu.close();
    const err = await rejection(t, p);
    t.equal(err.kind, 'unavailable');
  });

  t.test('a dropped connection is unavailable, retryable', async (t) => {
    const emu = await emulator(t, { failRate: 1, faultKinds: ['drop'] });
    const dsxa = client(t, emu.url);
    const err = await rejection(t, dsxa.scanBinary(Buffer.from('x')));
    t.equal(err.kind, 'unavailable');
    t.equal(err.retryable, true);
    const big = await rejection(t, dsxa.scanBinary(bigStream(4 * 1024 * 1024, 65536, Buffer.alloc(0), 0), { size: 4 * 1024 * 1024 }));
    t.equal(big.kind, 'unavailable');
  });

  t.test('faults are split evenly and stop when failRate is 0', async (t) => {
    const emu = await emulator(t, { failRate: 1, faultKinds: ['500', '503'] });
    const dsxa = client(t, emu.url);
    for (let i = 0; i < 4; i++) await rejection(t, dsxa.scanBinary(Buffer.from('x')));
    t.same(emu.stats().faults, { '500': 2, '503': 2 });
    emu.setOptions({ failRate: 0 });
    t.equal((await dsxa.scanBinary(Buffer.from('x'))).response.verdict, 'Benign');
  });
});

t.test('errors from servers that are not DSXA', async (t) => {
  t.test('200 with a body that is not JSON is a protocol error', async (t) => {
    const url = await server(t, (req, res) => {
      req.resume();
      res.end('not json');
    });
    const err = await rejection(t, client(t, url).scanBinary(Buffer.from('x')));
    t.equal(err.kind, 'protocol');
    t.equal(err.retryable, false);
    t.equal(err.httpStatus, 200);
    t.match(err.message, url);
  });

  t.test('200 with JSON that is not a verdict is a protocol error', async (t) => {
    const url = await server(t, (req, res) => {
      req.resume();
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ status: 'ok' }));
    });
    const err = await rejection(t, client(t, url).scanBinary(Buffer.from('x')));
    t.equal(err.kind, 'protocol');
  });

  t.test('4xx without a verdict is bad_request, 429 is unavailable', async (t) => {
    const url = await server(t, (req, res) => {
      req.resume();
      res.statusCode = req.headers['x-custom-metadata'] === 'busy' ? 429 : 404;
      res.end('nope');
    });
    const dsxa = client(t, url);
    const err = await rejection(t, dsxa.scanBinary(Buffer.from('x')));
    t.equal(err.kind, 'bad_request');
    t.equal(err.retryable, false);
    t.equal(err.httpStatus, 404);
    const busy = await rejection(t, dsxa.scanBinary(Buffer.from('x'), { metadata: 'busy' }));
    t.equal(busy.kind, 'unavailable');
    t.equal(busy.retryable, true);
  });

  t.test('403 is auth', async (t) => {
    const url = await server(t, (req, res) => {
      req.resume();
      res.statusCode = 403;
      res.end('{}');
    });
    const err = await rejection(t, client(t, url, { token: 'tok' }).scanBinary(Buffer.from('x')));
    t.equal(err.kind, 'auth');
    t.notMatch(err.message, 'tok ');
  });

  t.test('nobody listening is unavailable', async (t) => {
    const probe = await startEmulator();
    await probe.close();
    const err = await rejection(t, client(t, probe.url).scanBinary(Buffer.from('x')));
    t.equal(err.kind, 'unavailable');
    t.equal(err.retryable, true);
    t.match(err.message, /ECONNREFUSED/);
  });

  t.test('the client sends the SDK headers', async (t) => {
    let seen: http.IncomingHttpHeaders = {};
    let received = 0;
    const url = await server(t, (req, res) => {
      seen = req.headers;
      req.on('data', (c: Buffer) => (received += c.length));
      req.on('end', () => {
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify({ verdict: 'Benign', extra_field: 1 }));
      });
    });
    const r = await client(t, `${url}/`, { token: 'tok', protectedEntity: 3 }).scanBinary(Readable.from([Buffer.from('abc'), Buffer.from('de')]), {
      size: 5,
      metadata: 'm',
    });
    t.equal(r.response.verdict, 'Benign');
    t.equal((r.response as Record<string, unknown>).extra_field, 1, 'unknown fields are kept');
    t.equal(seen.auth_token, 'tok');
    t.equal(seen.auth, 'tok');
    t.equal(seen.protected_entity, '3');
    t.equal(seen['x-custom-metadata'], 'm');
    t.equal(seen['content-type'], 'application/octet-stream');
    t.equal(seen['content-length'], '5');
    t.equal(received, 5);
  });

  t.test('a stream longer or shorter than its declared size fails without hanging', async (t) => {
    const url = await server(t, (req, res) => {
      req.resume();
      req.on('end', () => res.end(JSON.stringify({ verdict: 'Benign' })));
    });
    const dsxa = client(t, url, { timeoutMs: 5000 });
    await t.rejects(dsxa.scanBinary(Readable.from([Buffer.from('abcdef')]), { size: 3 }), /length changed/);
    await t.rejects(dsxa.scanBinary(Readable.from([Buffer.from('ab')]), { size: 3 }), /length changed/);
    t.equal((await dsxa.scanBinary(Readable.from([Buffer.from('abc')]), { size: 3 })).response.verdict, 'Benign');
  });

  t.test("the body stream's own error is passed through", async (t) => {
    const url = await server(t, (req, res) => {
      req.resume();
      req.on('end', () => res.end(JSON.stringify({ verdict: 'Benign' })));
    });
    const failing = new Readable({
      read() {
        this.destroy(new Error('disk on fire'));
      },
    });
    await t.rejects(client(t, url).scanBinary(failing), { message: 'disk on fire' });
  });
});

t.test('timed-out requests give their connections back: hangs never starve later scans', async (t) => {
  const emu = await startEmulator({ port: 0, failRate: 1, faultKinds: ['hang'] });
  const client = new DsxaClient({ url: emu.url, timeoutMs: 150, maxInFlight: 2 });
  t.teardown(async () => {
    client.close();
    await emu.close();
  });
  const hung = await Promise.allSettled(Array.from({ length: 6 }, () => client.scanBinary(Buffer.from('x'))));
  t.ok(hung.every((r) => r.status === 'rejected' && (r.reason as DsxaError).kind === 'timeout'));
  t.equal(emu.stats().faults.hang, 6, 'every request reached the scanner (none queued behind a hung socket)');
  emu.setOptions({ failRate: 0 });
  const t0 = performance.now();
  const ok = await Promise.all(Array.from({ length: 4 }, () => client.scanBinary(Buffer.from('hello'))));
  t.ok(ok.every((r) => r.response.verdict === 'Benign'));
  t.ok(performance.now() - t0 < 1000, 'later scans are answered at once');
});
