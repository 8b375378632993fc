/**
 * Measures one GraphQL operation, with its variables, before it is planned or runs: how deep it is, how
 * many root fields and aliases it has, the page each connection asks for, and how many values the
 * response could hold (its cost). Anything over a limit (src/server/api-limits.ts) becomes a GraphQL
 * error naming what was asked, the limit and the variable that raises it.
 *
 * Cost model: every selected field is one value per parent object; the `nodes` / `edges` of a
 * connection repeat their selection once per row, rows being `first` or `last`, or the default page
 * when neither is given (graphql/plugins/request-limits.ts applies that default to the SQL). So
 * `allScanResults(first: 1000) { nodes { rowId outcome } }` costs 1 + 1 + 1,000 (the rows) + 2 x 1,000.
 * `totalCount` and `pageInfo` cost one value each, whatever the page.
 *
 * Introspection (`__schema`, `__type`) reads no rows and is not costed; instead it gets fixed limits
 * on its shape (after @graphile/depth-limit's introspection limits), because `__Type.fields { type {
 * fields ... } }` multiplies the schema by itself at every level.
 */
import {
  GraphQLError,
  GraphQLIncludeDirective,
  GraphQLSkipDirective,
  Kind,
  SchemaMetaFieldDef,
  TypeMetaFieldDef,
  TypeNameMetaFieldDef,
  getArgumentValues,
  getDirectiveValues,
  getNamedType,
  getNullableType,
  getOperationAST,
  getVariableValues,
  isCompositeType,
  isInterfaceType,
  isListType,
  isObjectType,
  type DocumentNode,
  type FieldNode,
  type FragmentDefinitionNode,
  type GraphQLField,
  type GraphQLNamedType,
  type GraphQLSchema,
  type SelectionNode,
  type SelectionSetNode,
} from 'postgraphile/graphql';
import { LIMIT_EXCEEDED, LIMIT_SETTINGS, type ApiLimits } from '../../src/server/api-limits.ts';

/** GraphiQL's introspection query (graphql-js getIntrospectionQuery with every option) is 15 fields deep. */
const INTROSPECTION_MAX_DEPTH = 15;
/** It nests 3 lists (types -> fields -> args); a 4th multiplies by the schema once more. */
const INTROSPECTION_MAX_LISTS = 3;
/** The one introspection field that may appear inside itself: type wrappers (`[Int!]!`) chain through it. */
const INTROSPECTION_CHAIN = '__Type.ofType';
/**
 * Most selections an operation may have with every fragment spread expanded where it is spread. Grafast
 * plans each spread anew: 16 fragments each spreading the next twice (65,536 expanded selections from
 * 1 KB of text) took 823 ms to plan here (2 cores), 24 of them about 220 s. GraphiQL's introspection
 * query expands to 240 selections, our largest operation (graphql/operations/) to 20; 10,000 would plan
 * in ~0.13 s at that rate.
 */
const MAX_EXPANDED_SELECTIONS = 10_000;
/** At most this many errors per refusal (20 aliased oversized pages would otherwise give 20). */
const MAX_ERRORS = 5;

/** The parts of the execution arguments that are measured. */
export interface OperationArgs {
  schema: GraphQLSchema;
  document: DocumentNode;
  operationName?: string | null;
  variableValues?: Readonly<Record<string, unknown>> | null;
}

/** One response key of a selection: the field nodes merged under it, and the type they are selected on. */
interface Collected {
  type: GraphQLNamedType;
  nodes: FieldNode[];
}

/** Where a selection set sits in the response. */
interface Frame {
  /** How many times the selection set occurs in the response. */
  multiplier: number;
  /** Fields above it. */
  depth: number;
  /** The response path, aliases used, for messages (`a1: allScanResults.nodes`). */
  path: string;
  /** Rows of the connection whose selection set this is (for its `nodes` / `edges`). */
  rows?: number;
  /** Inside __schema / __type: lists above, and the field coordinates on the path. */
  introspection?: { lists: number; coordinates: ReadonlySet<string> };
}

/** `requested` is null where the request asked for no bound at all. */
function limitError(message: string, node: FieldNode | undefined, limit: string, max: number, requested: number | null): GraphQLError {
  return new GraphQLError(message, { nodes: node, extensions: { code: LIMIT_EXCEEDED, limit, max, requested } });
}

const count = (n: number) => Math.round(n).toLocaleString('en-US');

/**
 * Selections of a selection set with every fragment expanded at each spread, computed once per
 * selection set (so in time linear in the text, however large the expansion), and stopping at
 * MAX_EXPANDED_SELECTIONS + 1.
 */
function expandedSize(set: SelectionSetNode, fragments: ReadonlyMap<string, FragmentDefinitionNode>, memo = new Map<SelectionSetNode, number>()): number {
  const known = memo.get(set);
  if (known !== undefined) return known;
  memo.set(set, Number.POSITIVE_INFINITY); // a fragment cycle (validation refuses them) counts as too many
  let n = 0;
  for (const s of set.selections) {
    n += 1;
    const inner = s.kind === Kind.FRAGMENT_SPREAD ? fragments.get(s.name.value)?.selectionSet : s.selectionSet;
    if (inner) n += expandedSize(inner, fragments, memo);
    if (n > MAX_EXPANDED_SELECTIONS) break;
  }
  memo.set(set, n);
  return n;
}

/**
 * The errors of an operation over the limits, none when it is within them. An operation the server
 * cannot identify or whose variables do not coerce is left to execution, which refuses it before any
 * step runs.
 */
export function limitViolations(args: OperationArgs, limits: ApiLimits): GraphQLError[] {
  const { schema, document } = args;
  const operation = getOperationAST(document, args.operationName ?? undefined);
  if (!operation) return [];
  const coercion = getVariableValues(schema, operation.variableDefinitions ?? [], (args.variableValues ?? {}) as Record<string, unknown>);
  if (coercion.errors) return [];
  const variables = coercion.coerced;
  const rootType = schema.getRootType(operation.operation);
  if (!rootType) return [];
  const fragments = new Map<string, FragmentDefinitionNode>();
  for (const d of document.definitions) if (d.kind === Kind.FRAGMENT_DEFINITION) fragments.set(d.name.value, d);

  const errors: GraphQLError[] = [];
  let rootFields = 0;
  let aliases = 0;
  let cost = 0;
  let deepest = { depth: 0, node: undefined as FieldNode | undefined };
  let introspectionError = false;

  const skipped = (s: SelectionNode): boolean => {
    try {
      if (getDirectiveValues(GraphQLSkipDirective, s, variables)?.if === true) return true;
      return getDirectiveValues(GraphQLIncludeDirective, s, variables)?.if === false;
    } catch {
      return false; // a bad directive argument is execution's to report
    }
  };

  const fieldDef = (parent: GraphQLNamedType, name: string): GraphQLField<unknown, unknown> | undefined => {
    if (name === '__typename') return TypeNameMetaFieldDef;
    if (parent === schema.getQueryType() && name === '__schema') return SchemaMetaFieldDef;
    if (parent === schema.getQueryType() && name === '__type') return TypeMetaFieldDef;
    return isObjectType(parent) || isInterfaceType(parent) ? parent.getFields()[name] : undefined;
  };

  const introspectionRefusal = (message: string, node: FieldNode, max: number, requested: number) => {
    if (introspectionError) return;
    introspectionError = true;
    errors.push(limitError(`${message}; this limit of introspection is fixed`, node, 'introspection', max, requested));
  };

  /** The rows a connection asks for; records a page-size error when it asks for too many or for all. */
  const rowsOf = (node: FieldNode, def: GraphQLField<unknown, unknown>, label: string): number => {
    let values: Record<string, unknown>;
    try {
      values = getArgumentValues(def, node, variables);
    } catch {
      return limits.defaultPageSize; // a bad argument is execution's to report
    }
    const first = typeof values.first === 'number' ? values.first : undefined;
    const last = typeof values.last === 'number' ? values.last : undefined;
    for (const [arg, n] of [['first', first], ['last', last]] as const) {
      if (n !== undefined && n > limits.maxPageSize) {
        errors.push(limitError(
          `${label}(${arg}: ${n}) asks for ${count(n)} rows; the largest page is ${count(limits.maxPageSize)} (${LIMIT_SETTINGS.maxPageSize}): page through with ${arg === 'first' ? 'first and after' : 'last and before'}, or raise ${LIMIT_SETTINGS.maxPageSize}`,
          node, LIMIT_SETTINGS.maxPageSize, limits.maxPageSize, n,
        ));
      }
    }
    if (first === undefined && last === undefined) {
      const given = node.arguments?.filter((a) => a.name.value === 'first' || a.name.value === 'last').map((a) => a.name.value) ?? [];
      if (given.length > 0) {
        // Given but null (a literal null, or a variable that is null or missing): the SQL would have no
        // LIMIT at all, as the default page applies only to connections that name neither argument.
        errors.push(limitError(
          `${label}(${given.map((a) => `${a}: null`).join(', ')}) would return every row: give first or last (at most ${count(limits.maxPageSize)}), or leave both out for the default page of ${count(limits.defaultPageSize)} rows (${LIMIT_SETTINGS.defaultPageSize})`,
          node, LIMIT_SETTINGS.maxPageSize, limits.maxPageSize, null,
        ));
      }
      return limits.defaultPageSize;
    }
    return Math.max(first ?? 0, last ?? 0);
  };

  /**
   * The fields of some selection sets by response key, merged as execution merges them: one entry per
   * key and parent type, and each fragment expanded once per collection (as graphql-js collectFields
   * does), so a fragment spread twice is one field, however deeply fragments nest.
   */
  const collect = (sets: readonly SelectionSetNode[], type: GraphQLNamedType, into: Map<string, Collected> = new Map(), spread: Set<string> = new Set()) => {
    for (const set of sets) {
      for (const s of set.selections) {
        if (skipped(s)) continue;
        if (s.kind === Kind.FIELD) {
          const key = `${type.name}:${s.alias?.value ?? s.name.value}`;
          const entry = into.get(key);
          if (entry) entry.nodes.push(s);
          else into.set(key, { type, nodes: [s] });
        } else if (s.kind === Kind.INLINE_FRAGMENT) {
          collect([s.selectionSet], (s.typeCondition && schema.getType(s.typeCondition.name.value)) || type, into, spread);
        } else if (!spread.has(s.name.value)) {
          spread.add(s.name.value);
          const f = fragments.get(s.name.value);
          if (f) collect([f.selectionSet], schema.getType(f.typeCondition.name.value) ?? type, into, spread);
        }
      }
    }
    return into;
  };

  const visitField = ({ type: parent, nodes }: Collected, frame: Frame) => {
    const node = nodes[0]!;
    const name = node.name.value;
    if (frame.depth === 0) rootFields += 1;
    if (node.alias && node.alias.value !== name) aliases += 1;
    const def = fieldDef(parent, name);
    if (!def) return; // validation already refused unknown fields
    const depth = frame.depth + 1;
    const label = `${frame.path}${node.alias ? `${node.alias.value}: ` : ''}${name}`;
    const entering = !frame.introspection && (name === '__schema' || name === '__type');
    const introspection = frame.introspection ?? (entering ? { lists: 0, coordinates: new Set<string>() } : undefined);
    if (introspection) {
      if (depth > INTROSPECTION_MAX_DEPTH) introspectionRefusal(`the introspection query is more than ${INTROSPECTION_MAX_DEPTH} fields deep (at ${label})`, node, INTROSPECTION_MAX_DEPTH, depth);
    } else {
      cost += frame.multiplier;
      if (depth > deepest.depth) deepest = { depth, node };
    }
    const named = getNamedType(def.type);
    const sets = nodes.flatMap((n) => (n.selectionSet ? [n.selectionSet] : []));
    if (sets.length === 0 || !isCompositeType(named)) return;
    const isList = isListType(getNullableType(def.type));
    const child: Frame = { multiplier: frame.multiplier, depth, path: `${label}.` };
    if (introspection) {
      const coordinate = `${parent.name}.${name}`;
      const lists = introspection.lists + (isList ? 1 : 0);
      if (lists > INTROSPECTION_MAX_LISTS) introspectionRefusal(`the introspection query nests ${lists} lists (at ${label}); at most ${INTROSPECTION_MAX_LISTS} are allowed (as in types -> fields -> args)`, node, INTROSPECTION_MAX_LISTS, lists);
      if (coordinate !== INTROSPECTION_CHAIN && introspection.coordinates.has(coordinate)) introspectionRefusal(`the introspection query selects ${coordinate} inside itself (at ${label}); only ${INTROSPECTION_CHAIN} may repeat along a path`, node, 1, 2);
      child.introspection = { lists, coordinates: new Set([...introspection.coordinates, coordinate]) };
    } else if (def.args.some((a) => a.name === 'first')) {
      child.rows = rowsOf(node, def, label);
    } else if (isList) {
      // A connection's nodes/edges repeat per row. A list of objects outside a connection has no page
      // to read (there is none in this schema today): assume the largest page.
      const items = frame.rows ?? limits.maxPageSize;
      cost += frame.multiplier * items;
      child.multiplier = frame.multiplier * items;
    }
    for (const field of collect(sets, named).values()) visitField(field, child);
  };

  const size = expandedSize(operation.selectionSet, fragments);
  if (size > MAX_EXPANDED_SELECTIONS) {
    return [limitError(
      `the operation has more than ${count(MAX_EXPANDED_SELECTIONS)} selections once its fragments are expanded (each spread counts again); this limit is fixed: spread fewer or smaller fragments`,
      undefined, 'expandedSelections', MAX_EXPANDED_SELECTIONS, null,
    )];
  }
  for (const field of collect([operation.selectionSet], rootType).values()) visitField(field, { multiplier: 1, depth: 0, path: '' });

  const structural: GraphQLError[] = [];
  if (deepest.depth > limits.maxDepth) {
    structural.push(limitError(
      `the operation is ${deepest.depth} fields deep; the limit is ${limits.maxDepth} (${LIMIT_SETTINGS.maxDepth}): split it into several requests, or raise ${LIMIT_SETTINGS.maxDepth}`,
      deepest.node, LIMIT_SETTINGS.maxDepth, limits.maxDepth, deepest.depth,
    ));
  }
  if (rootFields > limits.maxRootFields) {
    structural.push(limitError(
      `the operation asks for ${rootFields} root fields (aliases included); the limit is ${limits.maxRootFields} (${LIMIT_SETTINGS.maxRootFields}): send several requests, or raise ${LIMIT_SETTINGS.maxRootFields}`,
      undefined, LIMIT_SETTINGS.maxRootFields, limits.maxRootFields, rootFields,
    ));
  }
  if (aliases > limits.maxAliases) {
    structural.push(limitError(
      `the operation uses ${aliases} aliases; the limit is ${limits.maxAliases} (${LIMIT_SETTINGS.maxAliases}): send several requests, or raise ${LIMIT_SETTINGS.maxAliases}`,
      undefined, LIMIT_SETTINGS.maxAliases, limits.maxAliases, aliases,
    ));
  }
  const refused = [...structural, ...errors];
  if (refused.length === 0 && cost > limits.maxCost) {
    refused.push(limitError(
      `the operation could return up to ${count(cost)} values (rows from first/last, ${count(limits.defaultPageSize)} where neither is given, times the fields selected); the budget is ${count(limits.maxCost)} (${LIMIT_SETTINGS.maxCost}): ask for fewer rows or fields per request, or raise ${LIMIT_SETTINGS.maxCost}`,
      undefined, LIMIT_SETTINGS.maxCost, limits.maxCost, Math.round(cost),
    ));
  }
  return refused.slice(0, MAX_ERRORS);
}
