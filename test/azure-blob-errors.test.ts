import {
  AccountSASPermissions,
  AccountSASResourceTypes,
  AccountSASServices,
  BlobServiceClient,
  generateAccountSASQueryParameters,
  StorageSharedKeyCredential,
} from '@azure/storage-blob';
import t from 'tap';
import { AzureBlobConnector } from '../src/connectors/azure-blob/connector.ts';
import { RequestLimiter } from '../src/connectors/rate-limit.ts';
import { freePort } from '../src/testing/ports.ts';
import { AZURITE_ACCOUNT, AZURITE_KEY, blobNames, startAzurite, uploadBlobs } from '../src/testing/azurite.ts';
import { EICAR } from '../src/testing/fixtures.ts';

const az = await startAzurite({ blob: true });
t.teardown(() => az.stop());
const service = BlobServiceClient.fromConnectionString(az.connectionString);
const data = service.getContainerClient('data');
const quarantine = service.getContainerClient('quarantine');
await data.create();
await quarantine.create();
await uploadBlobs(data, { 'in/bad.exe': EICAR, 'in/good.txt': 'fine' });
const KEY = { accountName: AZURITE_ACCOUNT, accountKey: AZURITE_KEY };
const WRONG_KEY = { accountName: AZURITE_ACCOUNT, accountKey: Buffer.alloc(64, 1).toString('base64') };

function connector(settings: Record<string, unknown>, credentials: unknown = KEY): AzureBlobConnector {
  return new AzureBlobConnector({
    settings: { account_url: az.blobAccountUrl, container: 'data', quarantine_container: 'quarantine', ...settings },
    credentials,
    limiter: new RequestLimiter(),
  });
}

function sas(permissions: string): string {
  return generateAccountSASQueryParameters(
    {
      permissions: AccountSASPermissions.parse(permissions),
      resourceTypes: AccountSASResourceTypes.parse('sco').toString(),
      services: AccountSASServices.parse('b').toString(),
      expiresOn: new Date(Date.now() + 3_600_000),
    },
    new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY),
  ).toString();
}

/** Everything in both containers, to prove a failed call changed nothing. */
async function snapshot(): Promise<string[]> {
  return [...(await blobNames(data)).map((x) => `data/${x}`), ...(await blobNames(quarantine)).map((x) => `quarantine/${x}`)];
}
const INITIAL = ['data/in/bad.exe', 'data/in/good.txt'];

t.test('a wrong account key is a configuration error that says to check the credentials, and nothing is written', async (t) => {
  const c = connector({}, WRONG_KEY);
  await t.rejects(c.listPage('', null, 10), { name: 'ConnectorError', kind: 'configuration', message: /refused the credentials \(403 AuthorizationFailure\): check the account key or SAS token/ });
  await t.rejects(c.quarantine('in/bad.exe', { key: 'k' }), { name: 'ConnectorError', kind: 'configuration' });
  await t.rejects(c.remove('in/bad.exe'), { name: 'ConnectorError', kind: 'configuration' });
  t.same(await snapshot(), INITIAL);
});

t.test('a missing container (or quarantine container) is a configuration error naming it, and nothing is written', async (t) => {
  await t.rejects(connector({ container: 'no-such-container' }).listPage('', null, 10), {
    name: 'ConnectorError',
    kind: 'configuration',
    message: /container "no-such-container" does not exist in .*: create it or correct settings.container/,
  });
  await t.rejects(connector({ container: 'no-such-container' }).open('x'), { name: 'ConnectorError', kind: 'configuration' }, 'not a missing blob');
  await t.rejects(connector({ quarantine_container: 'no-such-quarantine' }).quarantine('in/bad.exe', { key: 'k' }), {
    name: 'ConnectorError',
    kind: 'configuration',
    message: /container "no-such-quarantine" does not exist/,
  });
  t.same(await snapshot(), INITIAL, 'the source was not deleted');
});

t.test('an account host that does not resolve is a configuration error; a refused connection is transient', async (t) => {
  await t.rejects(connector({ account_url: 'http://dsx-no-such-account.invalid/devstoreaccount1' }).listPage('', null, 1), {
    name: 'ConnectorError',
    kind: 'configuration',
    message: /account host dsx-no-such-account\.invalid does not resolve: correct settings.account_url/,
  });
  const port = await freePort();
  await t.rejects(connector({ account_url: `http://127.0.0.1:${port}/devstoreaccount1` }).open('in/bad.exe'), { name: 'ConnectorError', kind: 'transient', message: /ECONNREFUSED/ });
});

t.test('bad settings and credentials fail at construction with one line naming the field, never echoing a secret', async (t) => {
  const bad: [Record<string, unknown>, unknown, RegExp][] = [
    [{ container: undefined }, KEY, /^azure_blob settings\.container: /],
    [{ container: 'UPPER' }, KEY, /settings\.container: must be a container name/],
    [{ quarantine_prefix: 'q/' }, KEY, /give quarantine_container or quarantine_prefix, not both/],
    [{ quarantine_container: 'data' }, KEY, /settings\.quarantine_container: must differ from container/],
    [{ account_key: 'hunter2' }, KEY, /unknown key "account_key" \(credentials are not settings/],
    [{ tag_mode: 'labels' }, KEY, /settings\.tag_mode: /],
    [{ account_url: 'http://h/acct?sv=1&sig=SECRETSIG' }, KEY, /settings\.account_url: must not carry a query string/],
    [{ account_url: undefined }, KEY, /account_url: required unless the credentials are a connection string/],
    [{}, { accountName: AZURITE_ACCOUNT }, /^azure_blob credentials\.accountKey: must be a string/],
    [{}, { accountName: AZURITE_ACCOUNT, accountKey: 'not base64 !!SECRET' }, /^azure_blob credentials\.accountKey: must be the base64 account key$/],
    [{}, { sasToken: 'SECRET-SAS' }, /^azure_blob credentials\.sasToken: must be a SAS token with sv=\.\.\. and sig=\.\.\./],
    [{}, { connectionString: 'AccountName=x;SECRETSTUFF' }, /^azure_blob credentials\.connectionString: must contain AccountKey=/],
    [{}, { password: 'SECRET' }, /^azure_blob credentials: unknown key "password"; expected one of/],
    [{ account_url: 'http://127.0.0.1:1/other' }, { connectionString: az.connectionString }, /differs from the connection string's blob endpoint/],
    [{}, null, /account_url: must be https:\/\/ when the connector signs in with DefaultAzureCredential/],
  ];
  for (const [settings, credentials, message] of bad) {
    let err: unknown;
    try {
      connector(settings, credentials);
    } catch (e) {
      err = e;
    }
    t.match(err, { name: 'ConnectorError', kind: 'configuration', message }, String(message));
    const text = (err as Error).message;
    t.notMatch(text, /SECRET|hunter2|Eby8vdM02/, 'no secret in the message');
    t.notMatch(text, /\n/, 'one line');
  }
});

t.test('without credentials the connector signs in with DefaultAzureCredential; with no identity available that is a configuration error', async (t) => {
  const c = connector({ account_url: 'https://dsxnosuchaccount.invalid' }, null);
  // On a machine with an Azure identity the sign-in succeeds and the host then fails to resolve: both
  // are configuration errors that say what to fix.
  await t.rejects(c.listPage('', null, 1), { name: 'ConnectorError', kind: 'configuration', message: /no usable Azure identity .*: give the integration credentials|does not resolve/ });
});

t.test('probe reports every capability and changes nothing but its own probe blobs', async (t) => {
  const results = await connector({}).probe('in');
  t.same(results.map((r) => [r.capability, r.ok]), [['list', true], ['read', true], ['tag', true], ['quarantine', true], ['delete', true]], JSON.stringify(results));
  t.same(await snapshot(), INITIAL, 'no probe blob left, nothing else touched');
  const empty = await connector({ quarantine_container: undefined }).probe('empty-scope');
  t.match(empty.find((r) => r.capability === 'read'), { ok: true, detail: /the probe blob \(the scope is empty\)/ });
  t.same(await snapshot(), INITIAL);
});

t.test('probe with a read-only SAS says which capabilities are missing, and why', async (t) => {
  const results = await connector({}, { sasToken: sas('rl') }).probe('in');
  const by = Object.fromEntries(results.map((r) => [r.capability, r]));
  t.match(by, {
    list: { ok: true },
    read: { ok: true },
    quarantine: { ok: false, detail: /lack create\/write permission .*AuthorizationPermissionMismatch/ },
    tag: { ok: false },
    delete: { ok: false, detail: /lack delete permission/ },
  });
  t.same(await snapshot(), INITIAL);
  const none = await connector({ tag_mode: 'none' }).probe('in');
  t.match(none.find((r) => r.capability === 'tag'), { ok: false, detail: /tag_mode is none/ });
  t.same(await snapshot(), INITIAL);
});
