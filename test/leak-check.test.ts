/**
 * The leak check itself (test/helpers/leak-check.ts): a file whose tests leak a server, a child
 * process, a pool and a database session is run under it by a real tap; each leaking test fails
 * naming what it left open and where it was opened, the clean test passes, the file-level leak fails
 * the file, and everything reported was closed.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import t from 'tap';
import { PROJECT_DIR } from '../src/config.ts';
import { isRunning } from './helpers/proc.ts';
import { start } from './helpers/processes.ts';

t.test('a test that leaves a server, a child process, a pool or a session open fails naming it, and it is closed', async (t) => {
  const leakCheck = pathToFileURL(path.join(PROJECT_DIR, 'test', 'helpers', 'leak-check.ts')).href;
  // This file's own tap settings must not leak into the run below.
  const env = { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TAP'))), DSX_LEAK_CHECK_IDLE_MS: '2000' };
  const run = async () => {
    const tap = start(t, path.join(PROJECT_DIR, 'node_modules', '.bin', 'tap'), ['--reporter=tap', '--disable-coverage', `--node-arg=--import=${leakCheck}`, 'test/fixtures/leaky.ts'], {
      cwd: PROJECT_DIR,
      env,
    });
    const { code } = await tap.exited(120_000);
    return { code, out: tap.stdout(), err: tap.stderr() };
  };
  // Once in a CI run the inner tap ended within a second without running the fixture (the outer run
  // shares the project's .tap directory with it): such a run is reported, and the fixture run again.
  let { code, out, err } = await run();
  if (!out.includes('leak check: "leaves a server listening"')) {
    t.comment(`the inner tap did not run the fixture (exit ${code}); stdout: ${out.slice(-2000)} stderr: ${err.slice(-2000)}`);
    ({ code, out, err } = await run());
  }
  t.not(code, 0, 'the run fails');
  const failure = (name: string) => out.split('\n').find((l) => l.includes(`not ok`) && l.includes(`leak check: "${name}" left open`)) ?? '';

  t.match(failure('leaves a server listening'), /HTTP server listening on 127\.0\.0\.1:\d+ \(opened at test\/fixtures\/leaky\.ts:18\)/, 'the server, where it was opened');
  t.match(failure('leaves a child process running'), /child process pid \d+ \(sleep 30\) still running \(started at test\/fixtures\/leaky\.ts:23\)/, 'the child process');
  t.match(failure('leaves a pool open on its database'), /pool to t_[0-9a-f]+ \(opened at test\/fixtures\/leaky\.ts:30\) was never ended: 1 client\(s\), 0 checked out/, 'the pool');
  t.match(failure('leaves a session connected from another process'), /session pid \d+ still connected to t_[0-9a-f]+ \(application "", idle/, 'the session of another process');
  t.match(out, /\nok \d+ - closes everything it opens|\n\s+ok \d+ - closes everything it opens/, 'a test that closes what it opens passes');
  t.notMatch(out, /leak check: "closes everything it opens"/, 'and is not reported');
  t.match(out, /not ok \d+ - leak check: 2000 ms after the last test the file still holds open \(closed now; close it in a root t\.teardown\): HTTP server listening on 127\.0\.0\.1:\d+ \(opened at test\/fixtures\/leaky\.ts:14\)/,
    'what the file opened outside its tests fails the file once its tests are over');

  const pid = Number(/# leaked child pid (\d+)/.exec(out)?.[1]);
  t.ok(pid > 0 && !isRunning(pid), `the leaked child (pid ${pid}) was killed by the check`);
});
