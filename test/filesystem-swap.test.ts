/**
 * The time-of-check/time-of-use attack on the filesystem connector, on a real tree: while a worker
 * thread renames a directory inside the root back and forth with a symlink to a directory outside
 * holding canary files, the connector reads, stats, deletes, quarantines and lists the file below it in
 * a loop. Nothing outside the root may be read, listed, moved or deleted, and nothing may land outside
 * the quarantine directory. (Against the connector that checked real paths and then acted on path
 * strings, this listed outside files and deleted canaries within 3 s.) And without /proc/self/fd,
 * which that guarantee rests on, every operation must fail closed.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import t from 'tap';
import { FilesystemConnector } from '../src/connectors/filesystem/index.ts';
import { ConnectorError } from '../src/connectors/types.ts';

const CANARY = `CANARY-${process.pid}-`.padEnd(4096, 'c');
const TARGET = 'sub/d/deeper/f.txt';

/** The attacker: swaps `d` for a symlink to `outside` and back until told to stop; posts its swap count. */
const ATTACKER = `
const { workerData, parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const { d, real, link, file } = workerData;
const stop = new Int32Array(workerData.stop);
let swaps = 0;
while (Atomics.load(stop, 0) === 0) {
  fs.renameSync(d, real);
  fs.renameSync(link, d);
  for (let i = 0; i < 20; i++) fs.lstatSync(d); // stay a while in the dangerous state
  fs.renameSync(d, link);
  fs.renameSync(real, d);
  if (!fs.existsSync(file)) fs.writeFileSync(file, 'inside ' + swaps);
  swaps++;
}
parentPort.postMessage(swaps);
`;

/** Every file below `dir` (relative path -> content), symlinks as `-> target`. */
function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string) => {
    for (const d of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = path.join(rel, d.name);
      if (d.isDirectory()) walk(r);
      else if (d.isSymbolicLink()) out.set(r, `-> ${fs.readlinkSync(path.join(dir, r))}`);
      else out.set(r, fs.readFileSync(path.join(dir, r), 'utf8'));
    }
  };
  walk('');
  return out;
}

t.test('a directory swapped for a symlink mid-operation never lets a read, stat, delete, move or listing reach outside the root', async (t) => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-swap-'));
  t.teardown(() => fs.rmSync(base, { recursive: true, force: true }));
  const root = path.join(base, 'root');
  const outside = path.join(base, 'outside');
  const quarantine = path.join(base, 'quarantine');
  fs.mkdirSync(path.join(root, 'sub/d/deeper'), { recursive: true });
  fs.writeFileSync(path.join(root, TARGET), 'inside');
  fs.mkdirSync(path.join(outside, 'deeper'), { recursive: true });
  for (const name of ['f.txt', 'only-outside.txt', 'g.txt']) fs.writeFileSync(path.join(outside, 'deeper', name), CANARY);
  const canaries = snapshot(outside);
  fs.symlinkSync(outside, path.join(root, 'sub/.lnk'));

  const stop = new SharedArrayBuffer(4);
  const attacker = new Worker(ATTACKER, {
    eval: true,
    workerData: { d: path.join(root, 'sub/d'), real: path.join(root, 'sub/d.real'), link: path.join(root, 'sub/.lnk'), file: path.join(root, TARGET), stop },
  });
  const swapped = new Promise<number>((resolve, reject) => {
    attacker.once('message', resolve);
    attacker.once('error', reject);
  });
  t.teardown(async () => {
    Atomics.store(new Int32Array(stop), 0, 1);
    await attacker.terminate();
  });

  const c = new FilesystemConnector({ root, quarantineDir: quarantine });
  const violations: string[] = [];
  const outcomes = new Map<string, number>();
  const count = (k: string) => outcomes.set(k, (outcomes.get(k) ?? 0) + 1);
  const attempt = async (n: number) => {
    try {
      switch (n % 5) {
        case 0: {
          const o = await c.open(TARGET);
          const chunks: Buffer[] = [];
          for await (const chunk of o.stream) chunks.push(chunk as Buffer);
          if (Buffer.concat(chunks).toString('utf8').includes('CANARY')) violations.push('open served a canary');
          break;
        }
        case 1: {
          const info = await c.stat(TARGET);
          if (info?.size === CANARY.length) violations.push('stat described a canary');
          break;
        }
        case 2:
          await c.remove(TARGET);
          break;
        case 3: {
          const r = await c.quarantine(TARGET, { key: `decision-${n}` });
          if (r.status === 'done' && !r.detail?.startsWith(`moved to ${quarantine}/`)) violations.push(`quarantine went to ${r.detail}`);
          break;
        }
        default: {
          for (const scope of ['sub', 'sub/d']) {
            const page = await c.listPage(scope, null, 100);
            for (const o of page.objects) {
              if (o.identity.includes('only-outside') || o.size === CANARY.length) violations.push(`listed ${o.identity} from outside`);
            }
          }
        }
      }
      count('ok');
    } catch (err) {
      if (!(err instanceof ConnectorError)) throw err;
      count(err.kind);
    }
  };

  // Many tries in bounded time: 4 operations in flight at once, for 3 s (and at least 500 tries).
  const started = performance.now();
  let n = 0;
  while (performance.now() - started < 3000 || n < 500) {
    await Promise.all([attempt(n), attempt(n + 1), attempt(n + 2), attempt(n + 3)]);
    n += 4;
  }
  Atomics.store(new Int32Array(stop), 0, 1);
  const swaps = await swapped;
  t.comment(`${n} operations against ${swaps} swaps: ${JSON.stringify(Object.fromEntries(outcomes))}`);

  t.same(violations, [], 'nothing outside the root was read, described or listed');
  t.same(snapshot(outside), canaries, 'every canary is intact: nothing outside was deleted, moved or added');
  const moved = snapshot(quarantine);
  t.ok(moved.size > 0, `files were quarantined (${moved.size})`);
  t.ok([...moved.values()].every((content) => content.startsWith('inside')), 'the quarantine holds only files from inside the root, and no symlink');
  t.same(fs.readdirSync(base).sort(), ['outside', 'quarantine', 'root'], 'nothing was created beside them');
  t.ok(swaps >= 50, `the attacker swapped ${swaps} times`);
  t.ok((outcomes.get('ok') ?? 0) > 0 && (outcomes.get('escape') ?? 0) > 0, 'operations both succeeded and met the symlink (the race was really run)');
});

t.test('without /proc/self/fd every operation fails closed with a clear error and touches nothing', async (t) => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-noproc-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  fs.writeFileSync(path.join(root, 'a.txt'), 'a');
  // A private mount namespace without /proc (needs root and unshare(1)): the real condition, not a switch.
  const usable = spawnSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', 'umount -l /proc && test ! -e /proc/self'], { stdio: 'ignore' });
  if (usable.status !== 0) {
    t.comment('cannot build a process without /proc here (needs root and unshare); checking that this process has it');
    t.equal(fs.readlinkSync('/proc/self/cwd'), process.cwd(), '/proc/self is usable, so the connector acts through held descriptors');
    return;
  }
  const entry = new URL('../src/connectors/filesystem/index.ts', import.meta.url).href;
  const script = `
    const { FilesystemConnector } = await import(${JSON.stringify(entry)});
    const c = new FilesystemConnector({ root: ${JSON.stringify(root)}, quarantineDir: ${JSON.stringify(path.join(root, '..', path.basename(root) + '-q'))} });
    const out = [];
    for (const op of [() => c.listPage('', null, 5), () => c.open('a.txt'), () => c.stat('a.txt'), () => c.remove('a.txt'), () => c.quarantine('a.txt')]) {
      try { await op(); out.push('accepted'); } catch (e) { out.push(e.kind + ': ' + e.message); }
    }
    process.stdout.write(JSON.stringify(out));
  `;
  const child = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', 'umount -l /proc && exec "$0" --input-type=module -e "$1"', process.execPath, script], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d));
  child.stderr.on('data', (d: Buffer) => (stderr += d));
  t.equal(await new Promise((resolve) => child.once('exit', resolve)), 0, stderr.trim());
  const results = JSON.parse(stdout) as string[];
  t.equal(results.length, 5);
  for (const r of results) t.match(r, /^unavailable: the filesystem connector needs \/proc\/self\/fd .*; run the worker on Linux with \/proc mounted$/);
  t.equal(fs.readFileSync(path.join(root, 'a.txt'), 'utf8'), 'a', 'the file is untouched');
  t.notOk(fs.existsSync(`${root}-q`), 'no quarantine directory was created');
});
