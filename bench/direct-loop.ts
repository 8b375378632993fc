/**
 * The direct loop of the cloud scenarios: the pipeline's work without the pipeline. It lists the store
 * page by page with the SDK, reads each object with the SDK and streams it to the DSXA emulator through
 * the product's DsxaClient, `lanes` objects at once: no database, no queue, no connector.
 */
import type { Readable } from 'node:stream';
import { DsxaClient } from '../src/dsxa/client.ts';

/** One listed object. */
export interface Listed {
  key: string;
  size: number | null;
}

/** What the direct loop needs from a store: its listing and streamed reads, straight through the SDK. */
export interface DirectReader {
  /** Every object of the bucket or container, page by page (the pages the SDK returns). */
  list(): AsyncIterable<Listed>;
  /** A streamed read of one object; the stream is consumed or destroyed by the caller. */
  open(key: string): Promise<{ stream: Readable; size: number | null }>;
  close(): void;
}

/** What one direct run did. */
export interface DirectRun {
  objects: number;
  seconds: number;
  objects_per_s: number;
  verdicts: Record<string, number>;
}

/**
 * Scans every listed object: `lanes` workers take the next key from the shared listing (concurrent
 * `next()` calls on an async generator are queued by the language, so no key is taken twice), read it
 * and submit the stream, as a scan job does.
 */
export async function directLoop(reader: DirectReader, dsxaUrl: string, opts: { lanes: number; dsxaMaxInFlight: number }): Promise<DirectRun> {
  const client = new DsxaClient({ url: dsxaUrl, maxInFlight: opts.dsxaMaxInFlight });
  const verdicts: Record<string, number> = {};
  let objects = 0;
  const t0 = performance.now();
  try {
    const keys = reader.list()[Symbol.asyncIterator]();
    await Promise.all(
      Array.from({ length: opts.lanes }, async () => {
        for (let next = await keys.next(); !next.done; next = await keys.next()) {
          const opened = await reader.open(next.value.key);
          try {
            const r = await client.scanBinary(opened.stream, { size: opened.size ?? next.value.size });
            verdicts[r.response.verdict] = (verdicts[r.response.verdict] ?? 0) + 1;
            objects++;
          } finally {
            opened.stream.destroy();
          }
        }
      }),
    );
  } finally {
    client.close();
  }
  const seconds = (performance.now() - t0) / 1000;
  return { objects, seconds, objects_per_s: objects / seconds, verdicts };
}
