/**
 * Credentials of an Azure Blob integration (stored write-only apart from the settings and passed in):
 * exactly one of
 * - `{ connectionString }`: an Azure Storage connection string (account key or SAS inside);
 * - `{ accountName, accountKey }`: Shared Key;
 * - `{ sasToken }`: a SAS token (account or container SAS), with or without the leading `?`;
 * - none (`null`, `undefined` or `{}`): `DefaultAzureCredential` (managed identity, workload identity,
 *   environment, Azure CLI, ...) against `settings.account_url`.
 *
 * Error messages name the field and never echo a value.
 */
import { z } from 'zod';
import { ConnectorError } from '../types.ts';
import { describeIssue } from './settings.ts';

const nonEmpty = (what: string) => z.string({ error: `must be a string (${what})` }).trim().min(1, `must not be empty (${what})`);

const connectionString = z
  .object({
    connectionString: nonEmpty('an Azure Storage connection string').refine(
      (s) => /(^|;)\s*(AccountKey|SharedAccessSignature)\s*=/i.test(s) || /(^|;)\s*UseDevelopmentStorage\s*=\s*true/i.test(s),
      'must contain AccountKey=... or SharedAccessSignature=... (or UseDevelopmentStorage=true)',
    ),
  })
  .strict();

const sharedKey = z
  .object({
    accountName: nonEmpty('the storage account name').regex(/^[a-z0-9]{3,24}$/, 'must be a storage account name: 3-24 lowercase letters and digits'),
    // Account keys are 64 random bytes, base64: 88 characters on real accounts.
    accountKey: nonEmpty('the base64 account key').regex(/^[A-Za-z0-9+/]+={0,2}$/, 'must be the base64 account key'),
  })
  .strict();

const sas = z
  .object({
    sasToken: nonEmpty('a SAS token')
      .transform((s) => s.replace(/^\?/, ''))
      .refine((s) => /(^|&)sig=[^&]+/.test(s) && /(^|&)sv=[^&]+/.test(s), 'must be a SAS token with sv=... and sig=... (as the portal or az storage ... generate-sas prints it)'),
  })
  .strict();

/** Validated credentials of an Azure Blob integration; `kind: 'identity'` means DefaultAzureCredential. */
export type AzureCredentials =
  | { kind: 'connectionString'; connectionString: string }
  | { kind: 'sharedKey'; accountName: string; accountKey: string }
  | { kind: 'sas'; sasToken: string }
  | { kind: 'identity' };

const FORMS = '{connectionString}, {accountName, accountKey}, {sasToken}, or none (DefaultAzureCredential)';

/**
 * Validates stored credentials; throws ConnectorError('configuration') with a one-line message naming
 * the field (never its value).
 */
export function parseAzureCredentials(input: unknown): AzureCredentials {
  if (input === null || input === undefined) return { kind: 'identity' };
  if (typeof input !== 'object' || Array.isArray(input)) {
    throw new ConnectorError('configuration', `azure_blob credentials: expected an object, one of ${FORMS}`);
  }
  const keys = Object.keys(input);
  if (keys.length === 0) return { kind: 'identity' };
  const pick = (schema: z.ZodType) => {
    const r = schema.safeParse(input);
    if (!r.success) throw new ConnectorError('configuration', `azure_blob ${describeIssue(r.error, 'credentials')}`);
    return r.data as Record<string, string>;
  };
  if ('connectionString' in input) return { kind: 'connectionString', connectionString: pick(connectionString).connectionString! };
  if ('sasToken' in input) return { kind: 'sas', sasToken: pick(sas).sasToken! };
  if ('accountName' in input || 'accountKey' in input) {
    const c = pick(sharedKey);
    return { kind: 'sharedKey', accountName: c.accountName!, accountKey: c.accountKey! };
  }
  const shown = keys.map((k) => JSON.stringify(k)).join(', ');
  throw new ConnectorError('configuration', `azure_blob credentials: unknown key ${shown}; expected one of ${FORMS}`);
}
