/**
 * The Azure scenario's store: azurite's blob service in its own process (src/testing/azurite.ts: a
 * temporary --location, key auth with the well-known dev account), one container, driven with
 * `@azure/storage-blob` and the connection string the integration uses, so every request is signed
 * (Shared Key) in the direct loop as in the connector.
 */
import type { Readable } from 'node:stream';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { AzureBlobConnector } from '../src/connectors/azure-blob/connector.ts';
import { RequestLimiter } from '../src/connectors/rate-limit.ts';
import { startAzurite } from '../src/testing/azurite.ts';
import { inParallel, objectName, type BenchStore } from './cloud-store.ts';
import { childWithArgument } from './cpu.ts';
import type { DirectReader, Listed } from './direct-loop.ts';

const CONTAINER = 'bench-scanned';

async function* listAll(container: ContainerClient, pageSize: number | undefined): AsyncGenerator<Listed> {
  for await (const page of container.listBlobsFlat().byPage(pageSize ? { maxPageSize: pageSize } : {})) {
    for (const b of page.segment.blobItems) yield { key: b.name, size: b.properties.contentLength ?? null };
  }
}

/** Starts azurite's blob service with an empty container. */
export async function startAzureStore(): Promise<BenchStore> {
  const az = await startAzurite({ blob: true });
  try {
    // The SDK keeps one HTTP client (and its kept-alive sockets) per process: the sockets a reader
    // asks for are not configurable per client, and the connector's are the same.
    const container = BlobServiceClient.fromConnectionString(az.connectionString).getContainerClient(CONTAINER);
    await container.create();
    const settings = { container: CONTAINER, account_url: az.blobAccountUrl! };
    const credentials = { connectionString: az.connectionString };
    return {
      kind: 'azure_blob',
      pid: childWithArgument(az.location),
      async seed(count, contents) {
        await inParallel(count, 64, (i) => {
          const body = contents(i);
          return container.getBlockBlobClient(objectName(i)).upload(body, body.length);
        });
      },
      async rawListing(pageSize) {
        let n = 0;
        for await (const _ of listAll(container, pageSize)) n++;
        return n;
      },
      connector: () => new AzureBlobConnector({ settings, credentials, limiter: new RequestLimiter() }),
      reader(pageSize): DirectReader {
        return {
          list: () => listAll(container, pageSize),
          async open(key) {
            const res = await container.getBlobClient(key).download(0, undefined, { maxRetryRequests: 0 });
            return { stream: res.readableStreamBody as Readable, size: res.contentLength ?? null };
          },
          close: () => {},
        };
      },
      integration: () => ({ kind: 'azure_blob', settings, credentials }),
      stop: () => az.stop(),
    };
  } catch (err) {
    await az.stop();
    throw err;
  }
}
