/**
 * Real Azure Storage emulators for tests: azurite's blob and/or queue service (azurite 3.37, the
 * devDependency) as child processes on free ports of 127.0.0.1, with a temporary `--location` that
 * `stop()` removes. Flags: `--skipApiVersionCheck` (storage-blob 12.34 sends an API version azurite
 * does not know), `--loose`, `--silent`, and `--disableTelemetry` (without it shutdown takes ~19 s
 * offline). Port 0 is passed and the port azurite prints is read back, so there is no race for it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import type { ContainerClient } from '@azure/storage-blob';

/** The emulator's well-known account and key (published by Microsoft; not a secret). */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY = 'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface AzuriteOptions {
  blob?: boolean;
  queue?: boolean;
}

export interface Azurite {
  /** `http://127.0.0.1:N/devstoreaccount1`, when the blob service runs. */
  blobAccountUrl: string | null;
  /** `http://127.0.0.1:N/devstoreaccount1`, when the queue service runs. */
  queueAccountUrl: string | null;
  /** A key connection string with the endpoints of the services that run. */
  connectionString: string;
  /** The temporary workspace (removed by `stop`). */
  location: string;
  /** Stops the services (waiting for their exit) and removes the workspace. Safe to call twice. */
  stop(): Promise<void>;
}

const STARTUP_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

function binPath(name: 'azurite-blob' | 'azurite-queue'): string {
  const require = createRequire(import.meta.url);
  const pkgFile = require.resolve('azurite/package.json');
  const pkg = JSON.parse(fs.readFileSync(pkgFile, 'utf8')) as { bin: Record<string, string> };
  return path.join(path.dirname(pkgFile), pkg.bin[name]!);
}

/** Starts one service and resolves with its base URL once it prints that it listens. */
function startService(kind: 'blob' | 'queue', location: string, children: ChildProcess[]): Promise<{ child: ChildProcess; url: string }> {
  const args = [
    binPath(kind === 'blob' ? 'azurite-blob' : 'azurite-queue'),
    '--location', location,
    `--${kind}Host`, '127.0.0.1',
    `--${kind}Port`, '0',
    '--skipApiVersionCheck', '--loose', '--disableTelemetry', '--silent',
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => fail(new Error(`azurite-${kind} did not start within ${STARTUP_TIMEOUT_MS} ms: ${err || out}`)), STARTUP_TIMEOUT_MS);
    const fail = (e: Error) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(e);
    };
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /successfully listens on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        child.stdout!.removeAllListeners('data');
        child.stdout!.resume(); // keep draining: a full pipe would stall the emulator
        resolve({ child, url: m[1]! });
      }
    });
    child.once('error', fail);
    child.once('exit', (code, signal) => fail(new Error(`azurite-${kind} exited (${code ?? signal}) before listening: ${err || out}`)));
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

/** Starts the requested services (default: blob only). */
export async function startAzurite(opts: AzuriteOptions = { blob: true }): Promise<Azurite> {
  const location = fs.mkdtempSync(path.join(os.tmpdir(), 'dsx-azurite-'));
  const children: ChildProcess[] = [];
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await Promise.all(children.map(stopChild));
    fs.rmSync(location, { recursive: true, force: true });
  };
  try {
    const [blob, queue] = await Promise.all([
      opts.blob ? startService('blob', location, children) : null,
      opts.queue ? startService('queue', location, children) : null,
    ]);
    const blobAccountUrl = blob ? `${blob.url}/${AZURITE_ACCOUNT}` : null;
    const queueAccountUrl = queue ? `${queue.url}/${AZURITE_ACCOUNT}` : null;
    const connectionString = [
      'DefaultEndpointsProtocol=http',
      `AccountName=${AZURITE_ACCOUNT}`,
      `AccountKey=${AZURITE_KEY}`,
      blobAccountUrl ? `BlobEndpoint=${blobAccountUrl}` : null,
      queueAccountUrl ? `QueueEndpoint=${queueAccountUrl}` : null,
    ]
      .filter(Boolean)
      .join(';') + ';';
    return { blobAccountUrl, queueAccountUrl, connectionString, location, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Every blob name of a container (all pages), in listing order. */
export async function blobNames(container: ContainerClient, prefix?: string): Promise<string[]> {
  const names: string[] = [];
  for await (const b of container.listBlobsFlat({ prefix })) names.push(b.name);
  return names;
}

/** Uploads each `name -> content` as a block blob. */
export async function uploadBlobs(container: ContainerClient, blobs: Record<string, string | Buffer>): Promise<void> {
  for (const [name, content] of Object.entries(blobs)) {
    const body = typeof content === 'string' ? Buffer.from(content) : content;
    await container.getBlockBlobClient(name).upload(body, body.length);
  }
}

/** Reads a stream to its end. */
export async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks);
}
