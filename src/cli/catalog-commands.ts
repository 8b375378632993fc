/** `dsx-connect integration|scope|channel ...`: the catalog, backed by the dsx.* SQL functions. */
import path from 'node:path';
import fs from 'node:fs';
import type { Command } from 'commander';
import {
  channelCreate,
  integrationCreate,
  integrationGetByName,
  integrationList,
  scopeCreate,
  scopeGetByName,
  scopeList,
  scopeSetPolicy,
} from '../db/sql/catalog.ts';
import { channelList } from '../db/sql/channels.ts';
import { eventSecretEnsure, monitorOverview, scopeSetMonitor } from '../db/sql/monitor.ts';
import { loadConfig } from '../config.ts';
import { quarantineDirProblem } from '../connectors/filesystem/index.ts';
import crypto from 'node:crypto';
import { action, jsonArg, output, UsageError, withDatabase } from './common.ts';
import { checkFaultSettings, intInRange, LIMITS } from './options.ts';
import { cloudIntegration, type CloudOptions } from './cloud-options.ts';
import { registerIntegrationTest } from './integration-test.ts';
import { readSecretOption, safeForms, type SecretSource } from './secrets.ts';

const collect = (v: string, prev: string[]) => [...prev, v];

/** SQLSTATE unique_violation. */
const UNIQUE_VIOLATION = '23505';

export function registerCatalogCommands(program: Command): void {
  const integration = program.command('integration').description('manage integrations (connections to storage)');
  integration
    .command('add')
    .description('add an integration')
    .requiredOption('--name <name>', 'integration name')
    .requiredOption('--kind <kind>', 'filesystem | synthetic | s3 | azure_blob')
    .option('--root <dir>', 'filesystem: the directory this integration covers')
    .option('--quarantine <dir>', 'filesystem: where "move" remediation puts objects, outside the share (default <DSX_DATA_DIR>/quarantine/<id>)')
    .option('--objects <n>', `synthetic: number of generated objects (${LIMITS.syntheticObjects.min}-${LIMITS.syntheticObjects.max})`)
    .option('--bucket <name>', 's3: the bucket')
    .option('--container <name>', 'azure_blob: the container')
    .option('--prefix <prefix>', 's3, azure_blob: base prefix of the integration (identities are names relative to it)')
    .option('--endpoint <url>', 's3: URL of an S3-compatible store (default AWS)')
    .option('--region <region>', 's3: signing region (default us-east-1)')
    .option('--path-style', 's3: path-style URLs (on by default with --endpoint)')
    .option('--account-url <url>', 'azure_blob: the account URL, e.g. https://ACCOUNT.blob.core.windows.net')
    .option('--quarantine-bucket <bucket>', 's3: quarantine into this bucket (default: the prefix dsx-quarantine/ of the same bucket)')
    .option('--quarantine-container <container>', 'azure_blob: quarantine into this container (default: the prefix dsx-quarantine/)')
    .option('--quarantine-prefix <prefix>', 's3, azure_blob: quarantine under this prefix of the same bucket/container')
    .option('--tag-mode <mode>', 's3: tags | none; azure_blob: index_tags | metadata | none (how verdict tags are written)')
    .option('--event-queue <url>', 's3: an SQS queue URL; azure_blob: a Storage Queue URL; the monitor role polls it for storage events')
    .option('--event-queue-endpoint <url>', 's3: endpoint of an SQS-compatible service (default: the queue URL\'s host)')
    .option('--credentials-file <file>', 's3: {"accessKeyId", "secretAccessKey", "sessionToken"?}; azure_blob: {"connectionString"}, {"accountName", "accountKey"} or {"sasToken"} (stored write-only; default: the AWS chain / DefaultAzureCredential)')
    .option('--settings <json>', 'extra settings as a JSON object')
    .option('--json', 'print JSON')
    .action(
      action(async (o: CloudOptions & { name: string; kind: string; root?: string; quarantine?: string; objects?: string; settings?: string; json?: boolean }) => {
        let credentials: Record<string, unknown> | null = null;
        const settings: Record<string, unknown> = o.settings ? (jsonArg('--settings', o.settings) as Record<string, unknown>) : {};
        if (typeof settings !== 'object' || settings === null || Array.isArray(settings)) throw new UsageError('--settings must be a JSON object');
        checkFaultSettings(settings);
        if (o.kind === 'filesystem') {
          if (!o.root) throw new UsageError('a filesystem integration needs --root DIR');
          const root = path.resolve(o.root);
          if (!fs.existsSync(root) || !fs.statSync(root).isDirectory()) throw new UsageError(`--root ${root} is not an existing directory`);
          settings.root = root;
          if (o.quarantine) settings.quarantine_dir = path.resolve(o.quarantine);
          if (settings.quarantine_dir !== undefined) {
            const q = settings.quarantine_dir;
            const problem = typeof q === 'string' ? quarantineDirProblem(root, q) : 'quarantine_dir must be a string (an absolute path)';
            if (problem) throw new UsageError(problem);
          }
        } else if (o.kind === 'synthetic') {
          if (!o.objects) throw new UsageError('a synthetic integration needs --objects N');
          settings.objects = intInRange('--objects', o.objects, LIMITS.syntheticObjects);
        } else if (o.kind === 's3' || o.kind === 'azure_blob') {
          credentials = cloudIntegration(o.kind, o, settings).credentials;
        } else {
          throw new UsageError(`unknown --kind ${JSON.stringify(o.kind)} (expected filesystem, synthetic, s3 or azure_blob)`);
        }
        await withDatabase(async (db) => {
          const row = await integrationCreate(db.pool, { name: o.name, kind: o.kind, settings, credentials });
          output(!!o.json, row, () => String(row.id));
        });
      }),
    );
  integration
    .command('list')
    .description('list integrations')
    .option('--json', 'print JSON')
    .action(
      action(async (o: { json?: boolean }) => {
        await withDatabase(async (db) => {
          const rows = await integrationList(db.pool);
          output(!!o.json, rows, () => rows.map((r) => `${r.id}\t${r.name}\t${r.kind}\t${JSON.stringify(r.settings)}`).join('\n'));
        });
      }),
    );

  registerIntegrationTest(integration);

  integration
    .command('event-secret')
    .description('print the event intake URL and secret of an integration (created on first use)')
    .argument('<name>', 'integration name')
    .option('--rotate', 'replace the secret with a new one (senders must be updated)')
    .option('--base-url <url>', 'public base URL of the API server (default http://localhost:PORT)')
    .option('--json', 'print JSON')
    .action(
      action(async (name: string, o: { rotate?: boolean; baseUrl?: string; json?: boolean }) => {
        const base = (o.baseUrl ?? `http://localhost:${loadConfig().port}`).replace(/\/+$/, '');
        await withDatabase(async (db) => {
          const integ = await integrationGetByName(db.pool, name);
          if (!integ) throw new UsageError(`unknown integration ${JSON.stringify(name)} (see: dsx-connect integration list)`);
          const secret = await eventSecretEnsure(db.pool, integ.id, !!o.rotate, crypto.randomBytes(24).toString('base64url'));
          const url = `${base}/events/${integ.id}`;
          output(!!o.json, { integration_id: integ.id, url, secret }, () =>
            [
              `url:    ${url}`,
              `secret: ${secret}`,
              'Authenticate each POST with one of:',
              `  Authorization: Bearer ${secret}`,
              '  X-DSX-Timestamp: <unix seconds> and X-DSX-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>", keyed with the secret>',
              `  ${url}?token=${secret}   (SNS subscriptions, Event Grid webhooks)`,
            ].join('\n'),
          );
        });
      }),
    );

  const scope = program.command('scope').description('manage scopes (what to protect inside an integration)');
  scope
    .command('add')
    .description('add a scope; prints its id')
    .requiredOption('--integration <name>', 'integration name')
    .requiredOption('--name <name>', 'scope name')
    .requiredOption('--root <path>', 'directory inside the integration ("" or "." for all of it)')
    .option('--include <glob>', 'only objects matching (relative to the scope root); repeatable', collect, [])
    .option('--exclude <glob>', 'skip objects matching; repeatable', collect, [])
    .option('--policy <json>', 'post-scan policy, e.g. {"malicious":{"remediation":"move","notify":true}}')
    .option('--monitor', 'turn monitoring on for this scope')
    .option('--json', 'print JSON')
    .action(
      action(async (o: { integration: string; name: string; root: string; include: string[]; exclude: string[]; policy?: string; monitor?: boolean; json?: boolean }) => {
        const policy = o.policy ? jsonArg('--policy', o.policy) : {};
        await withDatabase(async (db) => {
          const integ = await integrationGetByName(db.pool, o.integration);
          if (!integ) throw new UsageError(`unknown integration ${JSON.stringify(o.integration)} (see: dsx-connect integration list)`);
          let root = o.root;
          // An absolute path inside a filesystem integration is accepted and made relative.
          if (integ.kind === 'filesystem' && path.isAbsolute(root)) {
            const base = String(integ.settings.root);
            const rel = path.relative(base, path.resolve(root));
            if (rel.startsWith('..') || path.isAbsolute(rel)) throw new UsageError(`--root ${root} is outside integration ${integ.name} (${base})`);
            root = rel;
          }
          const row = await scopeCreate(db.pool, {
            integrationId: integ.id,
            name: o.name,
            root,
            include: o.include,
            exclude: o.exclude,
            policy,
            monitor: !!o.monitor,
          });
          output(!!o.json, row, () => String(row.id));
        });
      }),
    );
  scope
    .command('list')
    .description('list scopes')
    .option('--json', 'print JSON')
    .action(
      action(async (o: { json?: boolean }) => {
        await withDatabase(async (db) => {
          const rows = await scopeList(db.pool);
          output(!!o.json, rows, () =>
            rows.map((r) => `${r.id}\t${r.name}\t${r.integration_name}:/${r.root}\t${r.enabled ? 'enabled' : 'disabled'}\t${JSON.stringify(r.policy)}`).join('\n'),
          );
        });
      }),
    );
  scope
    .command('update')
    .description('change a scope: turn monitoring on or off')
    .argument('<scope>', 'scope name')
    .option('--monitor', 'turn monitoring on')
    .option('--no-monitor', 'turn monitoring off')
    .action(
      action(async (name: string, o: { monitor?: boolean }) => {
        if (o.monitor === undefined) throw new UsageError('nothing to change: give --monitor or --no-monitor');
        await withDatabase(async (db) => {
          const s = await scopeGetByName(db.pool, name);
          if (!s) throw new UsageError(`unknown scope ${JSON.stringify(name)} (see: dsx-connect scope list)`);
          await scopeSetMonitor(db.pool, s.id, o.monitor!);
          process.stdout.write(`scope ${name}: monitoring ${o.monitor ? 'on' : 'off'}\n`);
        });
      }),
    );
  scope
    .command('set-policy')
    .description('set the post-scan policy of a scope')
    .argument('<scope>', 'scope name')
    .argument('<policy>', 'policy JSON')
    .action(
      action(async (name: string, policy: string) => {
        const p = jsonArg('policy', policy);
        await withDatabase(async (db) => {
          const s = await scopeGetByName(db.pool, name);
          if (!s) throw new UsageError(`unknown scope ${JSON.stringify(name)}`);
          await scopeSetPolicy(db.pool, s.id, p);
        });
      }),
    );

  program
    .command('monitor')
    .description('monitoring per scope: on/off and event counters (received, scanned, coalesced, ignored)')
    .option('--json', 'print JSON')
    .action(
      action(async (o: { json?: boolean }) => {
        await withDatabase(async (db) => {
          const rows = await monitorOverview(db.pool);
          output(!!o.json, rows, () =>
            rows
              .map(
                (r) =>
                  `${r.scope_id}\t${r.scope_name}\tmonitor ${r.monitor ? 'on' : 'off'}\treceived=${r.events_received} scanned=${r.events_scanned} ` +
                  `coalesced=${r.events_coalesced} ignored: deleted=${r.ignored_deleted} excluded=${r.ignored_excluded} disabled=${r.ignored_disabled}`,
              )
              .join('\n'),
          );
        });
      }),
    );

  const channel = program.command('channel').description('manage notification channels (signed webhooks)');
  channel
    .command('add')
    .description('add a webhook channel; prints its id')
    .requiredOption('--name <name>', 'channel name')
    .requiredOption('--url <url>', 'http(s) URL receiving JSON POSTs')
    .option('--secret <->', 'read the HMAC-SHA256 key for the X-DSX-Signature header (8+ characters) from stdin: "-"')
    .option('--secret-file <file>', 'read that key from this file (default: DSX_CHANNEL_SECRET)')
    .action(
      action(async (o: { name: string; url: string; secret?: string; secretFile?: string }) => {
        const source: SecretSource = { flag: '--secret', value: o.secret, fileFlag: '--secret-file', file: o.secretFile, envName: 'DSX_CHANNEL_SECRET' };
        const secret = (await readSecretOption(source)) ?? (process.env.DSX_CHANNEL_SECRET || undefined);
        if (secret === undefined) throw new UsageError(`a channel needs a signing secret: give ${safeForms(source)}`);
        const taken = new UsageError(`a channel named ${JSON.stringify(o.name)} already exists (see: dsx-connect channel list)`);
        await withDatabase(async (db) => {
          if ((await channelList(db.pool)).some((c) => c.name === o.name)) throw taken;
          const id = await channelCreate(db.pool, { name: o.name, url: o.url, secret }).catch((err: { code?: string }) => {
            throw err.code === UNIQUE_VIOLATION ? taken : err; // added meanwhile by someone else
          });
          process.stdout.write(`${id}\n`);
        });
      }),
    );
  channel
    .command('list')
    .description('list channels: name, url, enabled (never their secrets)')
    .option('--json', 'print JSON')
    .action(
      action(async (o: { json?: boolean }) => {
        const rows = await withDatabase((db) => channelList(db.pool));
        output(!!o.json, rows, () =>
          rows.length === 0
            ? `(no channels; add one with: dsx-connect channel add --name N --url URL --secret-file FILE)`
            : rows.map((c) => `${c.id}\t${c.name}\t${c.url}\t${c.enabled ? 'enabled' : 'disabled'}`).join('\n'),
        );
      }),
    );
}
