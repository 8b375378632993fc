/**
 * Time windows in `condition`: the reflected conditions only test equality, which is no use for
 * timestamps. This adds, to ScanResultCondition, `finalizedAfter` / `finalizedBefore` (on
 * scan_results.finalized_at) and, to ObjectCondition, `lastFinalizedAfter` / `lastFinalizedBefore` (on
 * objects.last_finalized_at). "After" is inclusive (>=) and "before" exclusive (<), so consecutive
 * windows neither overlap nor leave gaps. They combine with the other condition fields (scopeId,
 * fullScanId, outcome, ...) and work wherever the condition type is used (allScanResults,
 * scanResultsByFullScanId, ...).
 */
import { sqlValueWithCodec, TYPES } from 'postgraphile/@dataplan/pg';

/** Table (schema.name) -> column -> the two condition fields. */
const RANGES: Record<string, { column: string; after: string; before: string; what: string }[]> = {
  'dsx.scan_results': [{ column: 'finalized_at', after: 'finalizedAfter', before: 'finalizedBefore', what: 'finalized' }],
  'dsx.objects': [{ column: 'last_finalized_at', after: 'lastFinalizedAfter', before: 'lastFinalizedBefore', what: 'last finalized' }],
};

export const TimeRangeConditionsPlugin: GraphileConfig.Plugin = {
  name: 'DsxTimeRangeConditionsPlugin',
  version: '1.0.0',
  schema: {
    hooks: {
      GraphQLInputObjectType_fields(fields, build, context) {
        const { isPgCondition, pgCodec } = context.scope as { isPgCondition?: boolean; pgCodec?: { extensions?: { pg?: { schemaName?: string; name?: string } } } };
        const pg = pgCodec?.extensions?.pg;
        const ranges = isPgCondition && pg ? RANGES[`${pg.schemaName}.${pg.name}`] : undefined;
        if (!ranges) return fields;
        const Datetime = build.getTypeByName('Datetime');
        if (!Datetime || !build.graphql.isInputType(Datetime)) return fields;
        const { sql } = build;
        const bound = (column: string, op: '>=' | '<') =>
          ($condition: { where(spec: unknown): void }, value: unknown) => {
            if (value === null || value === undefined) return;
            $condition.where({
              type: 'attribute',
              attribute: column,
              callback: (expression: unknown) => {
                const bound = sqlValueWithCodec(value, TYPES.timestamptz);
                return op === '>=' ? sql`${expression as never} >= ${bound}` : sql`${expression as never} < ${bound}`;
              },
            });
          };
        let extended = fields;
        for (const r of ranges) {
          extended = build.extend(
            extended,
            {
              [r.after]: {
                description: `Only rows ${r.what} at or after this time (inclusive).`,
                type: Datetime,
                apply: bound(r.column, '>='),
              },
              [r.before]: {
                description: `Only rows ${r.what} before this time (exclusive).`,
                type: Datetime,
                apply: bound(r.column, '<'),
              },
            },
            `Adding ${r.after}/${r.before} to the condition of ${pg!.schemaName}.${pg!.name}`,
          );
        }
        return extended;
      },
    },
  },
};
