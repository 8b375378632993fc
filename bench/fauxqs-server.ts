/**
 * `node bench/fauxqs-server.ts BUCKET`: fauxqs (in memory) in a process of its own for the S3 scenario,
 * with one bucket; prints `listening <port>` once it accepts requests and stops on SIGTERM or when its
 * stdin closes.
 *
 * Its own process, as a real store would be: inside the bench's process it would share one event loop
 * with the workers whose throughput is measured, and its CPU could not be told apart from theirs.
 * fauxqs 2.4.1 binds 0.0.0.0 whatever it is told (hard-coded in `startFauxqs`); clients use 127.0.0.1.
 */
import { startFauxqs } from 'fauxqs';

const bucket = process.argv[2];
if (!bucket) {
  console.error('usage: node bench/fauxqs-server.ts BUCKET (the bucket to create)');
  process.exit(2);
}
const server = await startFauxqs({ port: 0, logger: false });
server.createBucket(bucket);
process.stdout.write(`listening ${server.port}\n`);
const stop = () => void server.stop().finally(() => process.exit(0));
process.once('SIGTERM', stop);
// The bench holds our stdin open: when it ends (the bench exited, even by a crash) nothing is left behind.
process.stdin.once('close', stop).resume();
