/**
 * How much one GraphQL request may ask of the API. Every limit is checked before any SQL runs and a
 * request over one is refused with a GraphQL error naming what was asked, the limit and the variable
 * that raises it. Before them, one viewer request with 20 aliases of `allScanResults(first: 100000)`
 * returned 257 MB and took the API process to 1.18 GB.
 */

/** The limits (environment variable in brackets). */
export interface ApiLimits {
  /** Largest HTTP request body and websocket message, in bytes (DSX_API_MAX_BODY_BYTES). */
  maxBodyBytes: number;
  /** Largest `first` / `last` of any connection (DSX_API_MAX_PAGE_SIZE). */
  maxPageSize: number;
  /** Rows a connection returns when it is given neither `first` nor `last` (DSX_API_DEFAULT_PAGE_SIZE). */
  defaultPageSize: number;
  /** Deepest nesting of fields, the leaf field included (DSX_API_MAX_DEPTH). */
  maxDepth: number;
  /** Fields at the root of one operation, each alias counted (DSX_API_MAX_ROOT_FIELDS). */
  maxRootFields: number;
  /** Aliased fields anywhere in one operation (DSX_API_MAX_ALIASES). */
  maxAliases: number;
  /** Values the response may hold at most, estimated from page sizes times selected fields (DSX_API_MAX_COST). */
  maxCost: number;
}

/** The environment variable behind each limit, named in every refusal. */
export const LIMIT_SETTINGS: Readonly<Record<keyof ApiLimits, string>> = {
  maxBodyBytes: 'DSX_API_MAX_BODY_BYTES',
  maxPageSize: 'DSX_API_MAX_PAGE_SIZE',
  defaultPageSize: 'DSX_API_DEFAULT_PAGE_SIZE',
  maxDepth: 'DSX_API_MAX_DEPTH',
  maxRootFields: 'DSX_API_MAX_ROOT_FIELDS',
  maxAliases: 'DSX_API_MAX_ALIASES',
  maxCost: 'DSX_API_MAX_COST',
};

/**
 * Defaults. 100 KiB of body is over 100 times the largest operation we ship
 * (graphql/operations/scan-results.graphql, 733 bytes) and about grafserv's own default (100,000).
 * Our deepest operation is 4 fields deep; `scope -> full scans -> results -> side effects -> field` is
 * 9. 50,000 values is a page of 1,000 rows of ~50 fields, or 10 root fields each a page of 100 rows of
 * ~50 fields: a few MB of JSON, against the 257 MB of that one request.
 */
export const DEFAULT_API_LIMITS: Readonly<ApiLimits> = {
  maxBodyBytes: 102_400,
  maxPageSize: 1000,
  defaultPageSize: 100,
  maxDepth: 10,
  maxRootFields: 10,
  maxAliases: 20,
  maxCost: 50_000,
};

/** The GraphQL error code of every refusal made for a limit. */
export const LIMIT_EXCEEDED = 'LIMIT_EXCEEDED';
