/**
 * Which browser pages may talk to the GraphQL API. Browsers attach no bearer token on their own, but
 * websockets are not subject to CORS and DNS rebinding makes a foreign page same-origin, so an API that
 * needs no token (`dev`, `server --open`) could be driven by any page its user visits: a probe created
 * an integration rooted at a folder with a delete policy and emptied it. The rules:
 *
 * - open mode: the `Host` must be a loopback name (localhost, 127.0.0.1, [::1]) or the address the
 *   server was told to listen on (this stops DNS rebinding), and an `Origin`, when sent, must be a
 *   loopback origin, the server's own, or listed in DSX_API_ALLOWED_ORIGINS;
 * - with tokens: an `Origin`, when sent, must be the server's own or listed in DSX_API_ALLOWED_ORIGINS.
 *
 * Requests without `Origin` (the CLI, curl, graphql-ws from Node) are not browser pages and pass.
 */
/** What the guard needs to know about the server. */
export interface OriginPolicy {
  /** The API needs no token (every caller is an operator). */
  open: boolean;
  /** Origins (scheme://host[:port], normalized by parseOrigin) allowed for browser clients. */
  allowedOrigins: readonly string[];
  /** The address the server listens on, as given (`--host`); wildcards (0.0.0.0, ::) add nothing. */
  listenHost?: string;
}

/** The guard's answer: pass (with the origin to name in CORS headers when it is an allowed foreign one), or refuse. */
export type OriginVerdict =
  | { ok: true; corsOrigin?: string }
  | { ok: false; code: 'FORBIDDEN_HOST' | 'FORBIDDEN_ORIGIN'; message: string };

const LOOPBACK_NAMES = new Set(['localhost', '127.0.0.1', '::1']);
const REQUIRE_TOKENS = 'or require tokens (set DSX_JWT_SECRET for `dev`, or run `dsx-connect server` without --open)';

/** `https://Console.Example.com:443/` -> `https://console.example.com`; undefined when it is not an http(s) origin. */
export function parseOrigin(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value.trim());
  } catch {
    return undefined;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
  if (url.username || url.password || url.search || url.hash || (url.pathname !== '/' && url.pathname !== '')) return undefined;
  return url.origin;
}

/** The host name of a Host header value (`[::1]:5678` -> `::1`, `Example.com.:80` -> `example.com`). */
function hostName(host: string): string {
  const h = host.trim().toLowerCase();
  const name = h.startsWith('[') ? h.slice(1, h.indexOf(']')) : h.replace(/:\d*$/, '');
  return name.endsWith('.') ? name.slice(0, -1) : name;
}

function isAddressedToUs(policy: OriginPolicy, host: string): boolean {
  const name = hostName(host);
  if (LOOPBACK_NAMES.has(name)) return true;
  const listen = policy.listenHost?.trim().toLowerCase().replace(/^\[|\]$/g, '');
  return !!listen && listen !== '0.0.0.0' && listen !== '::' && name === listen;
}

function isLoopbackOrigin(origin: string): boolean {
  const name = new URL(origin).hostname.replace(/^\[|\]$/g, '');
  return LOOPBACK_NAMES.has(name);
}

/** The same origin as the page the server itself serves: the Origin names the Host the request was sent to. */
function isSameOrigin(origin: string, host: string | undefined): boolean {
  if (!host) return false;
  const url = new URL(origin);
  const port = url.port || (url.protocol === 'https:' ? '443' : '80');
  const name = hostName(host);
  const hostPort = /:(\d+)$/.exec(host.trim())?.[1] ?? (url.protocol === 'https:' ? '443' : '80');
  return url.hostname.replace(/^\[|\]$/g, '') === name && port === hostPort;
}

/** Decides one request (HTTP or websocket upgrade) from its Origin and Host headers. */
export function checkOrigin(policy: OriginPolicy, headers: { origin?: string | undefined; host?: string | undefined }): OriginVerdict {
  const { host } = headers;
  if (policy.open && host !== undefined && !isAddressedToUs(policy, host)) {
    return {
      ok: false,
      code: 'FORBIDDEN_HOST',
      message: `request refused: the API runs open (no token needed, every caller is an operator), so it only answers requests addressed to localhost, 127.0.0.1 or [::1]${policy.listenHost ? ` or ${policy.listenHost}` : ''}, not to ${JSON.stringify(host)}; open it at http://127.0.0.1:<port>/, ${REQUIRE_TOKENS}`,
    };
  }
  if (headers.origin === undefined) return { ok: true };
  const origin = parseOrigin(headers.origin);
  if (origin && policy.allowedOrigins.includes(origin)) return isSameOrigin(origin, host) ? { ok: true } : { ok: true, corsOrigin: origin };
  if (origin && isSameOrigin(origin, host)) return { ok: true };
  if (origin && policy.open && isLoopbackOrigin(origin)) return { ok: true };
  const shown = JSON.stringify(headers.origin);
  return {
    ok: false,
    code: 'FORBIDDEN_ORIGIN',
    message: policy.open
      ? `request refused: the API runs open (no token needed, every caller is an operator), so browser pages may call it only from http://localhost, http://127.0.0.1 or http://[::1] (any port), not from ${shown}; list that origin in DSX_API_ALLOWED_ORIGINS to allow it, ${REQUIRE_TOKENS}`
      : `request refused: browser requests from ${shown} are not allowed; list that origin in DSX_API_ALLOWED_ORIGINS (comma-separated, e.g. https://console.example.com) to allow it`,
  };
}

/** The body of a refusal: a GraphQL-style error, so GraphQL clients show its message. */
export function refusalBody(verdict: Extract<OriginVerdict, { ok: false }>): string {
  return JSON.stringify({ errors: [{ message: verdict.message, extensions: { code: verdict.code } }] });
}
