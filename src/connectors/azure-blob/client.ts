/**
 * Builds the SDK's BlobServiceClient of an integration from its settings and credentials.
 *
 * The SDK's own retry policy is switched off (`maxTries: 1`) on purpose: by default it tries 4 times
 * with exponential backoff up to 120 s, inside one slot of our RequestLimiter and without honouring
 * Retry-After. Layered under our throttling retry (6 tries, calls.ts) that would be up to 24 requests
 * per call and minutes in one slot. Instead each layer owns one concern: throttling (503/429) is
 * retried by `withThrottleRetry` outside the limiter slot, everything else transient is retried by the
 * pipeline (the scan job's in-process tries, then the queue's backoff), and every try is one request
 * counted by the limiter.
 */
import { DefaultAzureCredential } from '@azure/identity';
import { AnonymousCredential, BlobServiceClient, StorageSharedKeyCredential, type StoragePipelineOptions } from '@azure/storage-blob';
import { ConnectorError } from '../types.ts';
import type { AzureCredentials } from './credentials.ts';
import type { AzureBlobSettings } from './settings.ts';

/** Pipeline options of every client this connector builds (see the module comment). */
export const PIPELINE_OPTIONS: StoragePipelineOptions = {
  retryOptions: { maxTries: 1 },
  userAgentOptions: { userAgentPrefix: 'dsx-connect' },
};

/** A service client and the account URL to name in messages (never with a SAS). */
export interface BlobService {
  service: BlobServiceClient;
  /** The account URL without query string, e.g. `https://acct.blob.core.windows.net`. */
  account: string;
  /** True when requests carry a SAS (a copy source URL then carries it too). */
  sas: boolean;
}

/** `https://acct.blob.core.windows.net/` -> `https://acct.blob.core.windows.net`; query dropped. */
export function bareUrl(url: string): string {
  const u = new URL(url);
  u.search = '';
  return u.toString().replace(/\/+$/, '');
}

/** Builds the service client; throws ConnectorError('configuration') when settings and credentials do not fit. */
export function createBlobService(settings: AzureBlobSettings, credentials: AzureCredentials): BlobService {
  const accountUrl = settings.account_url;
  if (credentials.kind === 'connectionString') {
    let service: BlobServiceClient;
    try {
      service = BlobServiceClient.fromConnectionString(credentials.connectionString, PIPELINE_OPTIONS);
    } catch (err) {
      // The SDK's message quotes nothing of the string; keep only its first line.
      const why = (err instanceof Error ? err.message : String(err)).split('\n')[0];
      throw new ConnectorError('configuration', `azure_blob credentials.connectionString: not a usable connection string (${why})`, { cause: err });
    }
    const account = bareUrl(service.url);
    if (accountUrl !== undefined && accountUrl !== account) {
      throw new ConnectorError('configuration', `azure_blob settings.account_url ${accountUrl} differs from the connection string's blob endpoint ${account}: drop account_url or fix one of them`);
    }
    return { service, account, sas: new URL(service.url).searchParams.has('sig') };
  }
  if (accountUrl === undefined) {
    throw new ConnectorError('configuration', 'azure_blob settings.account_url: required unless the credentials are a connection string (e.g. https://<account>.blob.core.windows.net)');
  }
  switch (credentials.kind) {
    case 'sharedKey':
      return {
        service: new BlobServiceClient(accountUrl, new StorageSharedKeyCredential(credentials.accountName, credentials.accountKey), PIPELINE_OPTIONS),
        account: accountUrl,
        sas: false,
      };
    case 'sas':
      return { service: new BlobServiceClient(`${accountUrl}?${credentials.sasToken}`, new AnonymousCredential(), PIPELINE_OPTIONS), account: accountUrl, sas: true };
    case 'identity':
      // The SDK refuses to send a bearer token over plain HTTP (and rightly so).
      if (!accountUrl.startsWith('https://')) {
        throw new ConnectorError('configuration', 'azure_blob settings.account_url: must be https:// when the connector signs in with DefaultAzureCredential (no credentials given)');
      }
      return { service: new BlobServiceClient(accountUrl, new DefaultAzureCredential(), PIPELINE_OPTIONS), account: accountUrl, sas: false };
  }
}
