/** `dsx-connect integration|scope|channel ...`: the catalog, backed by the dsx.* SQL functions. */
import path from 'node:path';
import type { Command } from 'commander';
import {
  filesystemRoots,
  integrationCreate,
  integrationDelete,
  integrationGetByName,
  integrationList,
  policyDestructive,
  scopeCreate,
  scopeDelete,
  scopeGetByName,
  scopeList,
  scopeSetEnabled,
  scopeSetPolicy,
  withActor,
} from '../db/sql/catalog.ts';
import { eventSecretEnsure, monitorOverview, scopeSetMonitor } from '../db/sql/monitor.ts';
import { loadConfig } from '../config.ts';
import { filesystemNeighbours, filesystemSettingsProblem } from '../connectors/filesystem/settings-check.ts';
import crypto from 'node:crypto';
import { registerChannelCommands } from './channel-commands.ts';
import { cliActor } from './cli-actor.ts';
import { action, jsonArg, output, UsageError, withDatabase } from './common.ts';
import { checkFaultSettings, intInRange, LIMITS } from './options.ts';
import { cloudIntegration, type CloudOptions } from './cloud-options.ts';
import { registerIntegrationTest } from './integration-test.ts';

const collect = (v: string, prev: string[]) => [...prev, v];

const ALLOW_DESTRUCTIVE = 'confirm a destructive policy: "delete" for any outcome, or any remediation of clean objects (recorded with who confirmed it)';

/** The `integration`, `scope`, `channel` and `monitor` commands. */
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
          settings.root = path.resolve(o.root);
          if (o.quarantine) settings.quarantine_dir = path.resolve(o.quarantine);
          const problem = filesystemSettingsProblem(settings);
          if (problem) throw new UsageError(problem.message, { hint: problem.hint });
        } else if (o.kind === 'synthetic') {
          if (!o.objects) throw new UsageError('a synthetic integration needs --objects N');
          settings.objects = intInRange('--objects', o.objects, LIMITS.syntheticObjects);
        } else if (o.kind === 's3' || o.kind === 'azure_blob') {
          credentials = cloudIntegration(o.kind, o, settings).credentials;
        } else {
          throw new UsageError(`unknown --kind ${JSON.stringify(o.kind)} (expected filesystem, synthetic, s3 or azure_blob)`);
        }
        await withDatabase(async (db) => {
          const row = await withActor(db.pool, cliActor(), async (q) => {
            if (o.kind === 'filesystem') {
              // Against the other filesystem integrations: neither one's share may hold the other's quarantine.
              const { dataDir } = loadConfig();
              const problem = filesystemSettingsProblem(settings, filesystemNeighbours(await filesystemRoots(q), dataDir), dataDir);
              if (problem) throw new UsageError(problem.message, { hint: problem.hint });
            }
            return integrationCreate(q, { name: o.name, kind: o.kind, settings, credentials });
          });
          output(!!o.json, row, () => String(row.id));
        });
      }),
    );
  integration
    .command('delete')
    .description('delete an integration; refused while it has scopes or storage events (its history is kept)')
    .argument('<name>', 'integration name')
    .action(
      action(async (name: string) => {
        await withDatabase(async (db) => {
          if (!(await withActor(db.pool, cliActor(), (q) => integrationDelete(q, name)))) {
            throw new UsageError(`unknown integration ${JSON.stringify(name)} (see: dsx-connect integration list)`);
          }
          process.stdout.write(`integration ${name}: deleted\n`);
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
    .option('--allow-destructive', ALLOW_DESTRUCTIVE)
    .option('--json', 'print JSON')
    .action(
      action(async (o: { integration: string; name: string; root: string; include: string[]; exclude: string[]; policy?: string; monitor?: boolean; allowDestructive?: boolean; json?: boolean }) => {
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
          const row = await withActor(db.pool, cliActor(), (q) =>
            scopeCreate(q, {
              integrationId: integ.id,
              name: o.name,
              root,
              include: o.include,
              exclude: o.exclude,
              policy,
              monitor: !!o.monitor,
              allowDestructive: !!o.allowDestructive,
            }),
          );
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
            rows
              .map((r) => {
                const confirmed = r.destructive_confirmed_by ? `\tdestructive policy confirmed by ${r.destructive_confirmed_by} at ${r.destructive_confirmed_at?.toISOString()}` : '';
                return `${r.id}\t${r.name}\t${r.integration_name}:/${r.root}\t${r.enabled ? 'enabled' : 'disabled'}\t${JSON.stringify(r.policy)}${confirmed}`;
              })
              .join('\n'),
          );
        });
      }),
    );
  scope
    .command('update')
    .description('change a scope: monitoring on or off, enabled or disabled (a disabled scope is neither scanned nor monitored, and keeps its history)')
    .argument('<scope>', 'scope name')
    .option('--monitor', 'turn monitoring on')
    .option('--no-monitor', 'turn monitoring off')
    .option('--enable', 'enable the scope')
    .option('--disable', 'disable the scope (what to do instead of deleting a scope with history)')
    .action(
      action(async (name: string, o: { monitor?: boolean; enable?: boolean; disable?: boolean }) => {
        if (o.enable && o.disable) throw new UsageError('give --enable or --disable, not both');
        const enabled = o.enable ? true : o.disable ? false : undefined;
        if (o.monitor === undefined && enabled === undefined) throw new UsageError('nothing to change: give --monitor, --no-monitor, --enable or --disable');
        await withDatabase(async (db) => {
          const s = await scopeGetByName(db.pool, name);
          if (!s) throw new UsageError(`unknown scope ${JSON.stringify(name)} (see: dsx-connect scope list)`);
          await withActor(db.pool, cliActor(), async (q) => {
            if (enabled !== undefined) await scopeSetEnabled(q, s.id, enabled);
            if (o.monitor !== undefined) await scopeSetMonitor(q, s.id, o.monitor);
          });
          if (enabled !== undefined) process.stdout.write(`scope ${name}: ${enabled ? 'enabled' : 'disabled'}\n`);
          if (o.monitor !== undefined) process.stdout.write(`scope ${name}: monitoring ${o.monitor ? 'on' : 'off'}\n`);
        });
      }),
    );
  scope
    .command('set-policy')
    .description('set the post-scan policy of a scope')
    .argument('<scope>', 'scope name')
    .argument('<policy>', 'policy JSON, e.g. {"malicious":{"remediation":"move","notify":["ops"]}}')
    .option('--allow-destructive', ALLOW_DESTRUCTIVE)
    .action(
      action(async (name: string, policy: string, o: { allowDestructive?: boolean }) => {
        const p = jsonArg('policy', policy);
        await withDatabase(async (db) => {
          const s = await scopeGetByName(db.pool, name);
          if (!s) throw new UsageError(`unknown scope ${JSON.stringify(name)} (see: dsx-connect scope list)`);
          const row = await withActor(db.pool, cliActor(), (q) => scopeSetPolicy(q, s.id, p, !!o.allowDestructive));
          const destructive = await policyDestructive(db.pool, row.policy);
          process.stdout.write(
            destructive.length && row.destructive_confirmed_by
              ? `scope ${name}: policy set; destructive (${destructive.join(', ')}), confirmed by ${row.destructive_confirmed_by}\n`
              : `scope ${name}: policy set\n`,
          );
        });
      }),
    );
  scope
    .command('delete')
    .description('delete a scope; refused when it has history (full scans, results, storage events): disable it instead')
    .argument('<scope>', 'scope name')
    .action(
      action(async (name: string) => {
        await withDatabase(async (db) => {
          if (!(await withActor(db.pool, cliActor(), (q) => scopeDelete(q, name)))) {
            throw new UsageError(`unknown scope ${JSON.stringify(name)} (see: dsx-connect scope list)`);
          }
          process.stdout.write(`scope ${name}: deleted\n`);
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

  registerChannelCommands(program);
}
