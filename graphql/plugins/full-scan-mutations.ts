/**
 * startFullScan / cancelFullScan: the names others script against, taking row ids as the BigInt that
 * `rowId` returns (graphql/plugins/row-id.ts). Each runs dsx.start_full_scan / dsx.cancel_full_scan (the functions the CLI and psql use) in
 * one transaction under the caller's database role; the payload's fullScan is then read back through
 * the reflected FullScan type.
 */
import { access, type Step } from 'postgraphile/grafast';
import { sideEffectWithPgClientTransaction } from 'postgraphile/@dataplan/pg';
import { extendSchema, gql } from 'postgraphile/utils';
import { fullScanCancel, fullScanStart } from '../../src/db/sql/full-scans.ts';
import { fromQueryConfigClient } from '../../src/db/sql/queryable.ts';
import { rowIdOf } from './row-id.ts';

/** null: the functions record the caller (dsx_private.actor(): the API subject the server set). */
const REQUESTED_BY = null;

export const FullScanMutationsPlugin = extendSchema((build) => {
  const fullScans = build.input.pgRegistry.pgResources.full_scans;
  if (!fullScans) throw new Error('dsx.full_scans is not in the GraphQL registry');
  const executor = fullScans.executor;
  return {
    typeDefs: gql`
      """How a cancel treats queued and in-flight scan jobs."""
      enum CancelMode {
        """Queued and in-flight scans finish and are finalized normally."""
        DRAIN
        """Every object not yet finalized ends now as canceled, without being fetched."""
        INTERRUPT
      }
      input StartFullScanInput {
        """Row id of the scope (its rowId, as printed by \`dsx-connect scope add\`)."""
        scopeId: BigInt!
      }
      type StartFullScanPayload {
        fullScan: FullScan
        """True when the scope already had an active scan: that scan is returned and nothing was enqueued."""
        alreadyActive: Boolean!
      }
      input CancelFullScanInput {
        """Row id of the full scan (its rowId, as printed by \`dsx-connect scan start\`)."""
        fullScanId: BigInt!
        mode: CancelMode! = DRAIN
      }
      type CancelFullScanPayload {
        fullScan: FullScan
      }
      extend type Mutation {
        """Starts a full scan of a scope, or returns its active one."""
        startFullScan(input: StartFullScanInput!): StartFullScanPayload
        """Cancels a queued or running full scan; a scan that already ended is returned as it is."""
        cancelFullScan(input: CancelFullScanInput!): CancelFullScanPayload
      }
    `,
    enums: {
      CancelMode: { values: { DRAIN: { value: 'drain' }, INTERRUPT: { value: 'interrupt' } } },
    },
    objects: {
      Mutation: {
        plans: {
          startFullScan(_$root: Step, fieldArgs: any) {
            const $scopeId = fieldArgs.getRaw(['input', 'scopeId']);
            return sideEffectWithPgClientTransaction(executor, $scopeId, async (client, raw) => {
              const scopeId = rowIdOf('scopeId', raw);
              const r = await fullScanStart(fromQueryConfigClient(client), scopeId, REQUESTED_BY);
              return { full_scan_id: r.fullScanRowId, already_active: r.alreadyActive };
            });
          },
          cancelFullScan(_$root: Step, fieldArgs: any) {
            const $input = fieldArgs.getRaw('input');
            return sideEffectWithPgClientTransaction(executor, $input, async (client, raw) => {
              const input = raw as { fullScanId: unknown; mode?: string };
              const id = rowIdOf('fullScanId', input.fullScanId);
              await fullScanCancel(fromQueryConfigClient(client), id, (input.mode ?? 'DRAIN').toLowerCase() as 'drain' | 'interrupt', REQUESTED_BY);
              return { full_scan_id: id };
            });
          },
        },
      },
      StartFullScanPayload: {
        plans: {
          fullScan($r: Step) {
            return fullScans.get({ id: access($r, 'full_scan_id') });
          },
          alreadyActive($r: Step) {
            return access($r, 'already_active');
          },
        },
      },
      CancelFullScanPayload: {
        plans: {
          fullScan($r: Step) {
            return fullScans.get({ id: access($r, 'full_scan_id') });
          },
        },
      },
    },
  };
}, 'DsxFullScanMutationsPlugin');
