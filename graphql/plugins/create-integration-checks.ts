/**
 * createIntegration checks a filesystem integration's settings on the API server's host before the
 * insert, as `dsx-connect integration add` does (src/connectors/filesystem/settings-check.ts, same
 * words): the root is an existing directory, the quarantine directory may serve it and stays out of
 * every other filesystem integration's root, and the root covers no other integration's quarantine
 * (read with filesystemRoots under the caller's role; default quarantines under this process's
 * DSX_DATA_DIR, as the workers place them). The database then checks what it can (absolute paths, a
 * quarantine outside the root).
 *
 * The side-effect step is created before the mutation's own plan, so grafast runs it first and the
 * function is never called when it throws.
 */
import { sideEffectWithPgClient } from 'postgraphile/@dataplan/pg';
import { SafeError, type Step } from 'postgraphile/grafast';
import { wrapPlans } from 'postgraphile/utils';
import { loadConfig } from '../../src/config.ts';
import { filesystemNeighbours, filesystemSettingsProblem } from '../../src/connectors/filesystem/settings-check.ts';
import { filesystemRoots } from '../../src/db/sql/catalog.ts';
import { fromQueryConfigClient, type QueryConfigClient } from '../../src/db/sql/queryable.ts';

/** SQLSTATE invalid_parameter_value: what the database itself raises for bad settings. */
const INVALID_PARAMETER_VALUE = '22023';

async function check(client: QueryConfigClient, input: unknown): Promise<null> {
  const { kind, settings } = (input ?? {}) as { kind?: unknown; settings?: unknown };
  if (kind !== 'filesystem' || typeof settings !== 'object' || settings === null || Array.isArray(settings)) return null;
  const { dataDir } = loadConfig();
  const others = filesystemNeighbours(await filesystemRoots(fromQueryConfigClient(client)), dataDir);
  const problem = filesystemSettingsProblem(settings as Record<string, unknown>, others, dataDir);
  if (problem) throw new SafeError(problem.message, { code: INVALID_PARAMETER_VALUE, ...(problem.hint ? { hint: problem.hint } : {}) });
  return null;
}

export const CreateIntegrationChecksPlugin = wrapPlans(
  (build) => {
    const integrations = build.input.pgRegistry.pgResources.integrations;
    if (!integrations) throw new Error('dsx.integrations is not in the GraphQL registry');
    const executor = integrations.executor;
    return {
      Mutation: {
        createIntegration(plan, _$source: Step, fieldArgs) {
          sideEffectWithPgClient(executor, fieldArgs.getRaw(['input']), (client, input) => check(client, input));
          return plan();
        },
      },
    };
  },
  { name: 'DsxCreateIntegrationChecksPlugin', disableResolverEmulationWarnings: true },
);
