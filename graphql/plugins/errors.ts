/**
 * Which errors reach the client as they are. Grafserv masks unexpected errors (logged with an id); the
 * errors our SQL raises on purpose (bad input, unknown ids, the no-overlap rule, permissions) are
 * meant for the operator, so their message, hint and SQLSTATE pass through. The few constraint errors
 * that name a constraint instead of the rule are said in words here.
 */
import { GraphQLError } from 'postgraphile/graphql';
import { defaultMaskError } from 'postgraphile/grafserv';

/**
 * SQLSTATE classes that are the caller's business: data exceptions, integrity, privileges, our P0xxx,
 * state, and dependent objects (a scope with history cannot be deleted).
 */
const CLIENT_SQLSTATE = /^(22|23|42501|P0002|P0001|55000|2BP01)/;

/**
 * PostgreSQL's DETAIL of a check or not-null violation is "Failing row contains (...)": every column of
 * the row, from any table, including dsx_private's write-only credentials (setIntegrationCredentials
 * with a non-object echoed them back). Such a detail is never passed on; the message names the constraint.
 */
function safeDetail(detail: string | undefined): string | undefined {
  return detail && !detail.startsWith('Failing row contains') ? detail : undefined;
}

/** The rule of dsx.name in words: the same text as dsx_private.name_rule() (test/catalog-names.test.ts compares them). */
export const NAME_RULE = 'a name is 1-63 characters: letters, digits, ".", "_" and "-", starting with a letter or digit';

/** The unique constraints on names, and how to say a taken name (the words of dsx_private.tg_catalog_unique_name). */
const NAME_KEYS: Record<string, [what: string, list: string]> = {
  integrations_name_key: ['an integration', 'integration'],
  scopes_name_key: ['a scope', 'scope'],
  notification_channels_name_key: ['a channel', 'channel'],
  api_tokens_name_key: ['an API token', 'token'],
};

type PgError = Error & { code?: unknown; hint?: string; detail?: string; severity?: string; constraint?: string };

/**
 * The constraint errors the functions and triggers cannot say in words, said in words: a name outside
 * dsx.name in an update or a lookup (GraphQL casts the argument to the domain before any of our code
 * runs, and PostgreSQL's message names neither the value nor the rule), and a taken name that passed
 * the trigger's check because another transaction took it at the same time.
 */
function explained(original: PgError): { code: string; message: string; hint?: string; detail?: string } {
  const code = original.code as string;
  if (code === '23514' && /^value for domain dsx\.name violates check constraint/.test(original.message)) {
    return { code: '22023', message: `this name is not allowed: ${NAME_RULE} (dsx.name)` };
  }
  const key = code === '23505' && original.constraint ? NAME_KEYS[original.constraint] : undefined;
  const taken = original.detail?.match(/^Key \(name\)=\((.*)\) already exists\.$/s);
  if (key && taken) return { code, message: `${key[0]} named ${JSON.stringify(taken[1])} already exists (see: dsx-connect ${key[1]} list)` };
  return {
    code,
    message: code === '42501' ? `permission denied: ${original.message}` : original.message,
    ...(original.hint ? { hint: original.hint } : {}),
    ...(safeDetail(original.detail) ? { detail: safeDetail(original.detail) } : {}),
  };
}

export function maskError(error: GraphQLError): GraphQLError {
  const original = error.originalError as PgError | undefined;
  if (original && typeof original.code === 'string' && original.severity && CLIENT_SQLSTATE.test(original.code)) {
    const { message, ...extensions } = explained(original);
    return new GraphQLError(message, {
      nodes: error.nodes,
      source: error.source,
      positions: error.positions,
      path: error.path,
      originalError: original,
      extensions,
    });
  }
  return defaultMaskError(error);
}
