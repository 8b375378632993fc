/**
 * createIntegration checks a filesystem integration's settings on the API server's host before the
 * insert, as `dsx-connect integration add` does (src/connectors/filesystem/settings-check.ts, same
 * words): the root is an existing directory, the quarantine directory may serve it. The database then
 * checks what it can (absolute paths, a quarantine outside the root).
 *
 * The sideEffect step is created before the mutation's own plan, so grafast runs it first and the
 * function is never called when it throws.
 */
import { SafeError, sideEffect, type Step } from 'postgraphile/grafast';
import { wrapPlans } from 'postgraphile/utils';
import { filesystemSettingsProblem } from '../../src/connectors/filesystem/settings-check.ts';

/** SQLSTATE invalid_parameter_value: what the database itself raises for bad settings. */
const INVALID_PARAMETER_VALUE = '22023';

function check(input: unknown): void {
  const { kind, settings } = (input ?? {}) as { kind?: unknown; settings?: unknown };
  if (kind !== 'filesystem' || typeof settings !== 'object' || settings === null || Array.isArray(settings)) return;
  const problem = filesystemSettingsProblem(settings as Record<string, unknown>);
  if (problem) throw new SafeError(problem.message, { code: INVALID_PARAMETER_VALUE, ...(problem.hint ? { hint: problem.hint } : {}) });
}

export const CreateIntegrationChecksPlugin = wrapPlans(
  {
    Mutation: {
      createIntegration(plan, _$source: Step, fieldArgs) {
        sideEffect(fieldArgs.getRaw(['input']), check);
        return plan();
      },
    },
  },
  { name: 'DsxCreateIntegrationChecksPlugin', disableResolverEmulationWarnings: true },
);
