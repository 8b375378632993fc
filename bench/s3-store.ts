/**
 * The S3 scenario's store: fauxqs (in memory) in its own process (bench/fauxqs-server.ts), one bucket,
 * driven with the AWS SDK v3 configured as the connector configures its client (path-style, checksums
 * only when required, kept-alive sockets), so that the direct loop differs from the pipeline by the
 * pipeline only.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { PROJECT_DIR } from '../src/config.ts';
import { RequestLimiter } from '../src/connectors/rate-limit.ts';
import { S3Connector } from '../src/connectors/s3/connector.ts';
import { FAUXQS_CREDENTIALS } from '../src/testing/s3-servers.ts';
import { inParallel, objectName, type BenchStore } from './cloud-store.ts';
import type { DirectReader, Listed } from './direct-loop.ts';

const BUCKET = 'bench-scanned';

function sdkClient(endpoint: string, sockets: number): S3Client {
  const agent = { keepAlive: true, maxSockets: sockets };
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { ...FAUXQS_CREDENTIALS },
    maxAttempts: 1,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: { httpAgent: agent, httpsAgent: agent },
  });
}

async function* listAll(client: S3Client, pageSize: number | undefined): AsyncGenerator<Listed> {
  let token: string | undefined;
  do {
    const out = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, ...(pageSize ? { MaxKeys: pageSize } : {}), ...(token ? { ContinuationToken: token } : {}) }));
    for (const o of out.Contents ?? []) yield { key: o.Key!, size: o.Size ?? null };
    token = out.IsTruncated ? out.NextContinuationToken : undefined;
  } while (token);
}

/** Starts fauxqs in a child process with an empty bucket. */
export async function startS3Store(): Promise<BenchStore> {
  const proc = spawn(process.execPath, [path.join(PROJECT_DIR, 'bench/fauxqs-server.ts'), BUCKET], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    proc.once('exit', (code) => reject(new Error(`fauxqs exited (${code}) before listening`)));
    proc.once('error', reject);
  });
  const endpoint = `http://127.0.0.1:${port}`;
  const clients: S3Client[] = [];
  const client = (sockets: number) => {
    const c = sdkClient(endpoint, sockets);
    clients.push(c);
    return c;
  };
  const settings = { bucket: BUCKET, endpoint };
  return {
    kind: 's3',
    pid: proc.pid ?? null,
    async seed(count, contents) {
      const c = client(64);
      await inParallel(count, 64, (i) => c.send(new PutObjectCommand({ Bucket: BUCKET, Key: objectName(i), Body: contents(i) })));
    },
    async rawListing(pageSize) {
      let n = 0;
      for await (const _ of listAll(client(1), pageSize)) n++;
      return n;
    },
    connector() {
      return new S3Connector({ settings, credentials: FAUXQS_CREDENTIALS, limiter: new RequestLimiter() });
    },
    reader(pageSize, sockets): DirectReader {
      const c = client(sockets);
      return {
        list: () => listAll(c, pageSize),
        async open(key) {
          const out = await c.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
          return { stream: out.Body as Readable, size: out.ContentLength ?? null };
        },
        close: () => c.destroy(),
      };
    },
    integration: () => ({ kind: 's3', settings, credentials: FAUXQS_CREDENTIALS }),
    async stop() {
      for (const c of clients) c.destroy();
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await exited;
    },
  };
}
