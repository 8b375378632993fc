/**
 * Seeded randomness for tests that draw random numbers (property tests, fault injection, kill
 * schedules): the seed is DSX_TEST_SEED when set, else a fresh one; it is written as a TAP comment at
 * once and, if the file fails, to stderr with the command that re-runs the file with it:
 *
 *   DSX_TEST_SEED=1234567 npm test -- test/crash.test.ts
 *
 * With the same seed the same numbers are drawn in the same order; what they meet (scheduling,
 * timing) may still differ between runs.
 */
import crypto from 'node:crypto';
import path from 'node:path';
import fc from 'fast-check';
import t from 'tap';

let fileSeed: number | undefined;

/** The seed of this test file's run (one per process), announced once and repeated on stderr if the file fails. */
export function testSeed(): number {
  if (fileSeed !== undefined) return fileSeed;
  const given = process.env.DSX_TEST_SEED;
  if (given !== undefined && !/^\d{1,10}$/.test(given)) throw new Error(`DSX_TEST_SEED must be a whole number (got ${JSON.stringify(given)})`);
  const seed = given !== undefined ? Number(given) % 2 ** 32 : crypto.randomInt(2 ** 31);
  fileSeed = seed;
  const file = path.relative(process.cwd(), process.argv[1] ?? 'the test file');
  t.comment(`random seed ${seed} (re-run with: DSX_TEST_SEED=${seed} npm test -- ${file})`);
  process.once('exit', () => {
    if (!t.passing()) process.stderr.write(`${file} failed with random seed ${seed}; re-run it with: DSX_TEST_SEED=${seed} npm test -- ${file}\n`);
  });
  return seed;
}

/** A generator of numbers in [0, 1) from `seed` (mulberry32: small, fast, good enough for tests). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** The file's random generator (seeded by `testSeed()`). */
export function testRandom(): () => number {
  return seededRandom(testSeed());
}

/**
 * Makes Math.random draw from the file's seed until the returned function is called: for randomness
 * inside the code under test (the emulator's `failRate`, the fault-injecting connector, backoff jitter).
 */
export function seedMathRandom(): () => void {
  const original = Math.random;
  Math.random = testRandom();
  return () => {
    Math.random = original;
  };
}

/** Every fast-check property of this file runs from the file's seed. */
export function seedFastCheck(): number {
  const seed = testSeed();
  fc.configureGlobal({ ...fc.readConfigureGlobal(), seed });
  return seed;
}
