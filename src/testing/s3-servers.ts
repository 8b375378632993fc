/**
 * Real local S3 servers for tests, started by the test file itself on free ports (port 0: the kernel
 * picks one, no race between finding a port and binding it):
 *
 * - fauxqs (S3 + SQS + SNS, in memory, in process): the best S3 core fidelity (odd keys, paging,
 *   multipart, copies). Never call object tagging on it: `PUT ?tagging` replaces the object's body.
 *   fauxqs 2.4.1 always listens on 0.0.0.0 (hard-coded in `startFauxqs`); clients use 127.0.0.1.
 * - s3rver (in a child process, because it needs `node --openssl-legacy-provider` for paged listings):
 *   the only one with working Get/PutObjectTagging; checks the access key id (`S3RVER`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { startFauxqs, type FauxqsServer } from 'fauxqs';

/** Credentials s3rver accepts (it checks the key id only). */
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
/** Credentials for fauxqs (it checks none). */
export const FAUXQS_CREDENTIALS = { accessKeyId: 'test-key-id', secretAccessKey: 'test-secret' };

/** A running local S3 server. */
export interface LocalS3 {
  /** http://127.0.0.1:port */
  endpoint: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** A plain SDK client for seeding and inspecting buckets (checksums WHEN_REQUIRED, no retries). */
  client(): S3Client;
  stop(): Promise<void>;
}

/** A running fauxqs, with its programmatic API for queues, topics and buckets. */
export interface LocalFauxqs extends LocalS3 {
  server: FauxqsServer;
}

function plainClient(endpoint: string, credentials: LocalS3['credentials']): S3Client {
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    // A copy: the SDK writes its own bookkeeping ($source) into the credentials object it is given.
    credentials: { ...credentials },
    maxAttempts: 1,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/**
 * Starts fauxqs in process with the given buckets. `relaxedRules.disableMinCopySourceSize` lets
 * UploadPartCopy take ranges of sources under 5 MiB (AWS refuses those; keep it off to be strict).
 */
export async function startLocalFauxqs(opts: { buckets?: string[]; relaxCopySourceSize?: boolean } = {}): Promise<LocalFauxqs> {
  const server = await startFauxqs({
    port: 0,
    logger: false,
    ...(opts.relaxCopySourceSize ? { relaxedRules: { disableMinCopySourceSize: true } } : {}),
  });
  for (const b of opts.buckets ?? []) server.createBucket(b);
  const endpoint = `http://127.0.0.1:${server.port}`;
  const clients: S3Client[] = [];
  return {
    endpoint,
    credentials: FAUXQS_CREDENTIALS,
    server,
    client() {
      const c = plainClient(endpoint, FAUXQS_CREDENTIALS);
      clients.push(c);
      return c;
    },
    async stop() {
      for (const c of clients) c.destroy();
      await server.stop();
    },
  };
}

/** Starts s3rver in a child process (Node 24 with the legacy OpenSSL provider) with the given buckets. */
export async function startLocalS3rver(opts: { buckets?: string[] } = {}): Promise<LocalS3> {
  const bin = createRequire(import.meta.url).resolve('s3rver/bin/s3rver.js');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-s3rver-'));
  const args = ['--openssl-legacy-provider', bin, '-d', dir, '-a', '127.0.0.1', '-p', '0', '-s'];
  for (const b of opts.buckets ?? []) args.push('--configure-bucket', b);
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let out = '';
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /listening on [^\s:]+:(\d+)/.exec(out);
        if (m) resolve(Number(m[1]));
      });
      child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
      child.once('exit', (code) => reject(new Error(`s3rver exited (${code}) before listening: ${out.trim()}`)));
      child.once('error', reject);
    });
  } catch (err) {
    child.kill('SIGKILL');
    await exited;
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const endpoint = `http://127.0.0.1:${port}`;
  const clients: S3Client[] = [];
  return {
    endpoint,
    credentials: S3RVER_CREDENTIALS,
    client() {
      const c = plainClient(endpoint, S3RVER_CREDENTIALS);
      clients.push(c);
      return c;
    },
    async stop() {
      for (const c of clients) c.destroy();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
