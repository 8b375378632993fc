#!/usr/bin/env node
// Entry point of the `dsx-connect` command. The product runs TypeScript natively and needs Node >= 22.18;
// when started by an older Node (say, a system Node 20), re-run with the Node 24 that `npm install`
// placed in node_modules (the `node` devDependency pins it through the project itself).
//
// The re-run child is the real process (a worker, a server, ...). This wrapper stands in for it: it
// forwards the stop signals it receives, and exits with the child's exit code or dies of the child's
// signal, so that `kill <pid>`, a supervisor or a shell sees the child's fate. (On Ctrl-C the terminal
// signals the child as well; the CLI counts the two deliveries as one request.)
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const main = path.join(root, 'src', 'cli', 'main.ts');
const [major, minor] = process.versions.node.split('.').map(Number);
if (major > 22 || (major === 22 && minor >= 18)) {
  await import(main);
} else {
  const pinned = path.join(root, 'node_modules', '.bin', 'node');
  if (!existsSync(pinned)) {
    console.error(`dsx-connect needs Node >= 22.18 (this is ${process.version}); run \`npm install\` in ${root} first`);
    process.exit(1);
  }
  const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  const child = spawn(pinned, [main, ...process.argv.slice(2)], { stdio: 'inherit' });
  const forward = (sig) => child.kill(sig);
  for (const sig of FORWARDED) process.on(sig, forward);
  child.once('error', (err) => {
    console.error(`dsx-connect: could not start ${pinned}: ${err.message}`);
    process.exit(1);
  });
  child.once('exit', (code, signal) => {
    if (signal === null) process.exit(code ?? 1);
    // Die of the same signal: without our handler its default action ends this process as it ended the
    // child. The timer keeps the event loop alive until it arrives, and exits like a shell would report
    // it (128 + its number) for a signal Node does not die of (SIGUSR1 starts its inspector).
    for (const sig of FORWARDED) process.off(sig, forward);
    setTimeout(() => process.exit(128 + (constants.signals[signal] ?? 0)), 1000);
    process.kill(process.pid, signal);
  });
}
