/**
 * The leak check, loaded into every test file's process before the file itself (test/run.ts passes
 * `--node-arg=--import=<this file>` to tap). After each top-level test it fails that test, naming each
 * pool, client, server or child process the test opened and left open, and each session still
 * connected to its database (test/helpers/db.ts); what it names is then closed, so one leak neither
 * hangs the file nor fails the next test. What the file opened outside its tests (`t.before`) is
 * checked once the file's tests and teardowns are done: anything left makes the file exit 1, listed on
 * stderr.
 *
 * A file whose last test has ended but which opened something outside its tests and has no root
 * teardown never ends (tap ends such a root only once nothing keeps the process alive). After
 * DSX_LEAK_CHECK_IDLE_MS (default 30 s) with no test running and the root idle, what the file holds
 * open fails the file, named, and is closed, instead of tap's timeout five minutes later.
 *
 * The hook runs after the test's own teardowns (tap 21 runs `afterEach` once the test has fully
 * ended): close what a test opens with `t.teardown` in the test. A file's own root `afterEach` runs
 * after this one, so it cannot close per-test resources in time.
 */
import t from 'tap';
import { enterTest, installLeakTracking, leaksOfFile, leaksOfTest, openFileResources, testRunning } from './leaks.ts';

installLeakTracking();

/** Minimal view of a tap test: enough to tell a top-level test from a nested one. */
interface TestView {
  name: string;
  parent?: { parent?: unknown } | null;
}

const topLevel = (test: TestView) => !!test.parent && !test.parent.parent;

t.beforeEach((test: TestView) => {
  if (topLevel(test)) enterTest(test);
});

t.afterEach(async (test: TestView) => {
  if (!topLevel(test)) return;
  const leaks = await leaksOfTest(test);
  if (leaks.length > 0) {
    throw new Error(`leak check: "${test.name}" left open (closed now; close it in the test's t.teardown): ${leaks.join('; ')}`);
  }
});

/** How long the root may sit idle, no test running, before what the file holds open is failed and closed. */
const IDLE_MS = Number(process.env.DSX_LEAK_CHECK_IDLE_MS ?? 30_000);

let ended = false;
let idleSince: number | undefined;
let sweeping = false;
setInterval(() => {
  if (ended || sweeping) return;
  if (testRunning() || !(t as unknown as { idle: boolean }).idle) {
    idleSince = undefined;
    return;
  }
  idleSince ??= Date.now();
  if (Date.now() - idleSince < IDLE_MS) return;
  sweeping = true;
  void openFileResources()
    .then(async (open) => {
      if (open.length === 0) return;
      t.fail(`leak check: ${IDLE_MS} ms after the last test the file still holds open (closed now; close it in a root t.teardown): ${open.join('; ')}`);
      await leaksOfFile();
    })
    .finally(() => {
      sweeping = false;
      idleSince = undefined;
    });
}, 1_000).unref();

/** How long a finished file may take to exit before what keeps it alive is listed (undici keep-alive sockets close after 4 s). */
const EXIT_GRACE_MS = 5_000;

t.once('complete', () => {
  ended = true;
  void leaksOfFile().then((leaks) => {
    if (leaks.length > 0) {
      process.stderr.write(`leak check: left open after the file's last test and teardown (now closed):\n  - ${leaks.join('\n  - ')}\n`);
      process.exitCode = 1;
    }
    // Timers and sockets cannot be named, only counted: a file that does not exit is reported, not failed.
    setTimeout(() => {
      const alive = process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap');
      process.stderr.write(`leak check: the file's tests are done, but ${EXIT_GRACE_MS} ms later the process is still kept alive by: ${alive.join(', ')}\n`);
    }, EXIT_GRACE_MS).unref();
  });
});
