/**
 * The leak check, loaded into every test file's process before the file itself (test/run.ts passes
 * `--node-arg=--import=<this file>` to tap). After each top-level test it fails that test, naming each
 * pool, client, server or child process the test opened and left open, and each session still
 * connected to its database (test/helpers/db.ts); what it names is then closed, so one leak neither
 * hangs the file nor fails the next test. What the file opened outside its tests (`t.before`) is
 * checked once the file's tests and teardowns are done: anything left makes the file exit 1, listed on
 * stderr.
 *
 * The hook runs after the test's own teardowns (tap 21 runs `afterEach` once the test has fully
 * ended): close what a test opens with `t.teardown` in the test. A file's own root `afterEach` runs
 * after this one, so it cannot close per-test resources in time.
 */
import t from 'tap';
import { enterTest, installLeakTracking, leaksOfFile, leaksOfTest } from './leaks.ts';

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

/** How long a finished file may take to exit before what keeps it alive is listed (undici keep-alive sockets close after 4 s). */
const EXIT_GRACE_MS = 5_000;

t.once('complete', () => {
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
