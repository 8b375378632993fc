/**
 * Which errors reach the client as they are. Grafserv masks unexpected errors (logged with an id); the
 * errors our SQL raises on purpose (bad input, unknown ids, the no-overlap rule, permissions) are
 * meant for the operator, so their message, hint and SQLSTATE pass through.
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

export function maskError(error: GraphQLError): GraphQLError {
  const original = error.originalError as (Error & { code?: unknown; hint?: string; detail?: string; severity?: string }) | undefined;
  if (original && typeof original.code === 'string' && original.severity && CLIENT_SQLSTATE.test(original.code)) {
    const message = original.code === '42501' ? `permission denied: ${original.message}` : original.message;
    const detail = safeDetail(original.detail);
    return new GraphQLError(message, {
      nodes: error.nodes,
      source: error.source,
      positions: error.positions,
      path: error.path,
      originalError: original,
      extensions: { code: original.code, ...(original.hint ? { hint: original.hint } : {}), ...(detail ? { detail } : {}) },
    });
  }
  return defaultMaskError(error);
}
