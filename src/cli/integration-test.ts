/**
 * `dsx-connect integration test NAME`: tries each capability the integration's scopes need (list and
 * read always; tag, quarantine (move) and delete when a scope's policy asks for them) and prints one line
 * per capability and scope: ok, or why not. Changes no object but the connector's own probe objects.
 */
import type { Command } from 'commander';
import { connectorFor } from '../connectors/registry.ts';
import type { ProbeResult } from '../connectors/types.ts';
import { integrationCredentialsGet, integrationGetByName, scopeList } from '../db/sql/catalog.ts';
import { action, output, withDatabase } from './common.ts';
import { UsageError } from './usage-error.ts';

type Capability = ProbeResult['capability'];

/** The capabilities a scope's policy needs (besides list and read). */
export function neededBy(policy: Record<string, unknown>): Set<Capability> {
  const need = new Set<Capability>(['list', 'read']);
  for (const rule of Object.values(policy)) {
    const r = (rule ?? {}) as { remediation?: unknown; tag?: unknown };
    if (r.remediation === 'tag' || r.tag === true) need.add('tag');
    if (r.remediation === 'move') need.add('quarantine');
    if (r.remediation === 'delete') need.add('delete');
  }
  return need;
}

export function registerIntegrationTest(integration: Command): void {
  integration
    .command('test')
    .description('try each capability the integration\'s scopes need (list, read, tag, quarantine, delete); changes no object but its own probe')
    .argument('<name>', 'integration name')
    .option('--all', 'try every capability, needed or not')
    .option('--json', 'print JSON')
    .action(
      action(async (name: string, o: { all?: boolean; json?: boolean }) => {
        await withDatabase(async (db, config) => {
          const integ = await integrationGetByName(db.pool, name);
          if (!integ) throw new UsageError(`unknown integration ${JSON.stringify(name)} (see: dsx-connect integration list)`);
          const scopes = (await scopeList(db.pool)).filter((s) => s.integration_id === integ.id);
          const credentials = await integrationCredentialsGet(db.pool, integ.id);
          const connector = connectorFor(integ, { dataDir: config.dataDir }, { credentials });
          try {
            if (!connector.probe) throw new UsageError(`integration ${name} (${integ.kind}) cannot be tested`);
            const targets = scopes.length ? scopes.map((s) => ({ scope: s.name, root: s.root, need: neededBy(s.policy) })) : [{ scope: null, root: '', need: neededBy({}) }];
            const rows: (ProbeResult & { scope: string | null; needed: boolean })[] = [];
            for (const target of targets) {
              for (const r of await connector.probe(target.root)) rows.push({ ...r, scope: target.scope, needed: o.all || target.need.has(r.capability) });
            }
            output(!!o.json, rows, () =>
              rows
                .map((r) => `${!r.needed ? 'skip' : r.ok ? 'ok  ' : 'FAIL'}  ${r.capability.padEnd(10)} ${r.scope ? `scope ${r.scope}: ` : ''}${r.needed ? r.detail : `not needed by the policy (${r.ok ? 'works' : r.detail})`}`)
                .join('\n'),
            );
            if (rows.some((r) => r.needed && !r.ok)) process.exitCode = 1;
          } finally {
            await connector.close?.();
          }
        });
      }),
    );
}
