/**
 * The CLI's client of the GraphQL API: queries and mutations over HTTP (fetch), subscriptions over
 * websockets (graphql-ws). Every failure becomes an ApiError whose message names the API URL and says
 * what to do (start the server, pass a token, use an operator token), so the CLI prints it on one line
 * with a hint instead of a stack trace. The operations themselves live in graphql/operations/.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';
import { PROJECT_DIR } from '../config.ts';

/** Where the API is and how to authenticate (from --api-url / DSX_API_URL and --token / DSX_API_TOKEN). */
export interface ApiTarget {
  url: string;
  token: string | undefined;
}

/** A failure talking to the API, safe to print as it is; `hint` says what to do about it. */
export class ApiError extends Error {
  readonly hint: string | undefined;
  /** The GraphQL error code when the server gave one (UNAUTHENTICATED, 42501, P0002, ...). */
  readonly code: string | undefined;
  constructor(message: string, opts: { hint?: string; code?: string } = {}) {
    super(message);
    this.hint = opts.hint;
    this.code = opts.code;
  }
}

/** The default API URL: the local server on PORT (what `dsx-connect server` and `npm start` listen on). */
export function defaultApiUrl(port: number): string {
  return `http://localhost:${port}/graphql`;
}

/** An operation from graphql/operations/ (the same files GraphiQL users and the tests run). */
export function operation(name: string): string {
  return fs.readFileSync(path.join(PROJECT_DIR, 'graphql', 'operations', `${name}.graphql`), 'utf8');
}

interface GraphQLErrorShape {
  message: string;
  extensions?: { code?: unknown; hint?: unknown };
}

const UNREACHABLE_HINT = 'start the API with `dsx-connect server` (or everything with `npm start`), or point --api-url / DSX_API_URL at a running one';
const TOKEN_HINT = 'pass --token or set DSX_API_TOKEN (create one with `dsx-connect token create --name NAME --role operator`)';

function unreachable(target: ApiTarget, cause: unknown): ApiError {
  const c = cause as { code?: string; message?: string; cause?: { code?: string; message?: string } } | undefined;
  const why = c?.cause?.code ?? c?.code ?? c?.cause?.message ?? c?.message ?? 'connection failed';
  return new ApiError(`cannot reach the DSX-Connect API at ${target.url} (${why})`, { hint: UNREACHABLE_HINT });
}

/** The first GraphQL error as an ApiError, with a hint for the codes an operator can act on. */
function fromGraphQLErrors(target: ApiTarget, errors: GraphQLErrorShape[]): ApiError {
  const first = errors[0]!;
  const code = typeof first.extensions?.code === 'string' ? first.extensions.code : undefined;
  if (code === 'UNAUTHENTICATED') {
    return new ApiError(`the API at ${target.url} refused the request: ${first.message}`, { code, hint: target.token ? 'check the token, or create a new one with `dsx-connect token create`' : TOKEN_HINT });
  }
  if (code === '42501') return new ApiError(first.message, { code, hint: 'this needs an operator token (`dsx-connect token create --role operator`)' });
  const hint = typeof first.extensions?.hint === 'string' && first.extensions.hint ? first.extensions.hint : undefined;
  return new ApiError(first.message, { code, hint });
}

/** Runs a query or mutation over HTTP; returns `data`, or throws an ApiError. */
export async function apiRequest<T>(target: ApiTarget, query: string, variables: Record<string, unknown> = {}): Promise<T> {
  let res: Response;
  try {
    res = await fetch(target.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/graphql-response+json, application/json',
        ...(target.token ? { authorization: `Bearer ${target.token}` } : {}),
      },
      body: JSON.stringify({ query, variables }),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (err) {
    throw unreachable(target, err);
  }
  const text = await res.text();
  let body: { data?: T | null; errors?: GraphQLErrorShape[] };
  try {
    body = JSON.parse(text) as typeof body;
  } catch {
    throw new ApiError(`unexpected answer from ${target.url}: HTTP ${res.status} ${text.slice(0, 120).replace(/\s+/g, ' ')}`, {
      hint: 'is this the /graphql endpoint of a DSX-Connect server?',
    });
  }
  if (body.errors?.length) throw fromGraphQLErrors(target, body.errors);
  if (!res.ok || body.data === undefined || body.data === null) throw new ApiError(`unexpected answer from ${target.url}: HTTP ${res.status}`);
  return body.data;
}

/**
 * Runs a subscription over websockets, calling `onData` for each event; resolves when the server ends
 * the stream, rejects with an ApiError on any failure (unreachable, refused token, GraphQL error, lost
 * connection). `stop()` ends it early (the promise then resolves).
 */
export function apiSubscribe<T>(
  target: ApiTarget,
  query: string,
  variables: Record<string, unknown>,
  onData: (data: T) => void,
): { done: Promise<void>; stop: () => void } {
  const client = createClient({
    url: target.url.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    connectionParams: target.token ? { authorization: `Bearer ${target.token}` } : {},
    retryAttempts: 0,
    lazy: true,
  });
  let unsubscribe = () => {};
  const done = new Promise<void>((resolve, reject) => {
    unsubscribe = client.subscribe<T>(
      { query, variables },
      {
        next: (result) => {
          if (result.errors?.length) reject(fromGraphQLErrors(target, result.errors as GraphQLErrorShape[]));
          else if (result.data) onData(result.data as T);
        },
        error: (err) => {
          if (Array.isArray(err)) return reject(fromGraphQLErrors(target, err as GraphQLErrorShape[]));
          const close = err as { code?: number; reason?: string; type?: string };
          // graphql-ws reports a failed or lost socket as an ErrorEvent / Error, or a CloseEvent.
          if (typeof close.code === 'number' && close.code !== 1000) {
            return reject(new ApiError(`the connection to the API at ${target.url} closed (${close.code}${close.reason ? ` ${close.reason}` : ''})`, { hint: UNREACHABLE_HINT }));
          }
          reject(unreachable(target, (err as { error?: unknown }).error ?? err));
        },
        complete: () => resolve(),
      },
    );
  }).finally(() => client.dispose());
  return {
    done,
    stop: () => unsubscribe(),
  };
}
