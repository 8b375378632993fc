/**
 * What a cloud scenario needs from a local storage server (fauxqs for S3, azurite for Azure Blob),
 * so that one scenario (cloud.ts) measures both the same way.
 */
import type { Connector } from '../src/connectors/types.ts';
import type { DirectReader } from './direct-loop.ts';

/** How the pipeline's integration for the store is created (`integrationCreate`'s fields). */
export interface IntegrationSpec {
  kind: string;
  settings: Record<string, unknown>;
  credentials: Record<string, unknown> | null;
}

/** A running local store with one bucket or container to fill, list and scan. */
export interface BenchStore {
  /** `s3` or `azure_blob`. */
  kind: string;
  /** The storage server's process (for CPU profiles), or null when it cannot be found. */
  pid: number | null;
  /** Puts `count` objects named `obj-000000001`... with the given contents, many at once. */
  seed(count: number, contents: (i: number) => Buffer): Promise<void>;
  /**
   * Lists the whole bucket with the SDK alone (no connector), in pages of `pageSize` (undefined: the
   * SDK's and service's default), and returns how many objects it saw.
   */
  rawListing(pageSize: number | undefined): Promise<number>;
  /** The product's connector for the store, as the registry builds it (default limits). */
  connector(): Connector;
  /** SDK listing and reads for the direct loop, keeping up to `sockets` connections open. */
  reader(pageSize: number, sockets: number): DirectReader;
  /** The integration the pipeline scans. */
  integration(): IntegrationSpec;
  stop(): Promise<void>;
}

/** The name of the i-th seeded object (1-based), as the synthetic connector names its objects. */
export function objectName(i: number): string {
  return `obj-${String(i).padStart(9, '0')}`;
}

/** Runs `fn(1..count)` with `parallel` calls in flight. */
export async function inParallel(count: number, parallel: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  let next = 1;
  await Promise.all(
    Array.from({ length: Math.min(parallel, count) }, async () => {
      while (next <= count) await fn(next++);
    }),
  );
}
