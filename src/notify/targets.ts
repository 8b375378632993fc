/**
 * The SSRF guard of notification webhooks: which hosts and addresses a delivery may connect to.
 *
 * A webhook must not become a way into the internal network, so unless DSX_WEBHOOK_ALLOW_PRIVATE is set
 * a delivery connects only to globally routable unicast addresses, and DSX_WEBHOOK_ALLOWED_HOSTS, when
 * set, restricts it to those host names. The check and the connection see the same address:
 *
 * - An IP literal in the URL (already normalized by the WHATWG URL parser, so `2130706433`,
 *   `0x7f000001`, `0177.0.0.1` and `127.1` all arrive as `127.0.0.1`) is vetted before anything is
 *   sent, and the socket connects to exactly that literal (Node performs no lookup for a literal).
 * - A name is resolved once, by the `lookup` that the socket itself calls; every address of the answer
 *   is vetted and only vetted addresses are handed to the socket. There is no second resolution that a
 *   rebinding name server could answer differently.
 * - IPv6 forms that embed an IPv4 address (IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64, 6to4,
 *   Teredo) are unwrapped and the embedded address is vetted too.
 * - A resolver that fails, answers nothing or answers something that is not an IP address refuses the
 *   delivery (fail closed).
 */
import dns from 'node:dns';
import type { LookupAddress, LookupOptions } from 'node:dns';
import net from 'node:net';
import ipaddr from 'ipaddr.js';

/** One address of a resolver's answer (the shape `dns.lookup(..., { all: true })` gives). */
export interface ResolvedAddress {
  address: string;
  family?: number;
}

/** Resolves a host name to all of its addresses. The default is `dns.lookup`; tests inject their own. */
export type Resolver = (hostname: string) => Promise<readonly ResolvedAddress[]>;

/** What a webhook delivery may reach. */
export interface TargetPolicy {
  /** Host names allowed (exact, case-insensitive, a trailing dot ignored); empty = any public host. */
  allowedHosts: string[];
  /** DSX_WEBHOOK_ALLOW_PRIVATE: skip the address check (names are still resolved once, by the socket). */
  allowPrivate: boolean;
  /** The resolver of host names; default `dns.lookup` (hosts file and DNS, every address, in its order). */
  resolve?: Resolver;
}

/** A delivery the guard refuses before anything is sent; `retryable` when a later attempt may pass. */
export class TargetRefused extends Error {
  readonly retryable: boolean;
  readonly code = 'ERR_WEBHOOK_TARGET_REFUSED';
  constructor(message: string, opts: { retryable: boolean; cause?: unknown }) {
    super(message, { cause: opts.cause });
    this.name = 'TargetRefused';
    this.retryable = opts.retryable;
  }
}

/** Where the socket of one delivery connects, as planned by `planConnection`. */
export interface ConnectionPlan {
  /** The vetted IP literal, or the host name that `lookup` resolves (once) and vets. */
  host: string;
  /** TLS server name (SNI and certificate check) for a name; unset for a literal (RFC 6066 forbids IPs). */
  servername?: string;
  /** The socket's lookup: resolves the name once and hands it only vetted addresses. */
  lookup: net.LookupFunction;
}

const PRIVATE_HINT = 'webhooks reach only public addresses unless DSX_WEBHOOK_ALLOW_PRIVATE=true';

/** Words for the special ranges ipaddr.js names; a range missing here is reported by its ipaddr.js name. */
const RANGE_WORDS: Record<string, string> = {
  unspecified: 'unspecified',
  broadcast: 'broadcast',
  multicast: 'multicast',
  linkLocal: 'link-local',
  loopback: 'loopback',
  carrierGradeNat: 'carrier-grade NAT (100.64.0.0/10)',
  private: 'private',
  reserved: 'reserved (documentation, benchmarking, IETF or future use)',
  as112: 'AS112 sink',
  as112v6: 'AS112 sink',
  amt: 'AMT relay anycast',
  benchmarking: 'benchmarking',
  uniqueLocal: 'unique local (fc00::/7)',
  deprecatedSiteLocal: 'site-local (deprecated, fec0::/10)',
  discard: 'discard-only (100::/64)',
  deprecatedOrchid: 'ORCHID (not routable)',
  orchid2: 'ORCHIDv2 (not routable)',
  droneRemoteIdProtocolEntityTags: 'DRIP entity tags (not routable)',
  segmentRouting: 'SRv6 SIDs (5f00::/16)',
};

const GLOBAL_UNICAST_V6 = ipaddr.IPv6.parseCIDR('2000::/3');
const NAT64_WELL_KNOWN = ipaddr.IPv6.parseCIDR('64:ff9b::/96');

function v4From(hi: number, lo: number): ipaddr.IPv4 {
  return new ipaddr.IPv4([hi >> 8, hi & 0xff, lo >> 8, lo & 0xff]);
}

/** Why an embedded IPv4 address is refused, or null; `form` names the embedding. */
function embeddedRefusal(form: string, v4: ipaddr.IPv4): string | null {
  const why = refusalOf(v4);
  return why ? `${form} ${v4.toString()}: ${why}` : null;
}

function refusalOf(ip: ipaddr.IPv4 | ipaddr.IPv6): string | null {
  if (ip.kind() === 'ipv4') {
    const range = (ip as ipaddr.IPv4).range();
    return range === 'unicast' ? null : (RANGE_WORDS[range] ?? range);
  }
  const v6 = ip as ipaddr.IPv6;
  const p = v6.parts;
  const range = v6.range();
  switch (range) {
    case 'ipv4Mapped':
      return embeddedRefusal('IPv4-mapped', v4From(p[6], p[7]));
    case 'rfc6145':
      return embeddedRefusal('IPv4-translated', v4From(p[6], p[7]));
    case 'rfc6052':
      // 64:ff9b:1::/48 (RFC 8215) is for local use and places the IPv4 address by prefix length.
      if (!v6.match(NAT64_WELL_KNOWN)) return 'local-use NAT64 (64:ff9b:1::/48)';
      return embeddedRefusal('NAT64', v4From(p[6], p[7]));
    case '6to4':
      return embeddedRefusal('6to4', v4From(p[1], p[2]));
    case 'teredo':
      // RFC 4380: the server's address in clear, the client's with every bit inverted.
      return embeddedRefusal('Teredo server', v4From(p[2], p[3])) ?? embeddedRefusal('Teredo client', v4From(p[6] ^ 0xffff, p[7] ^ 0xffff));
    case 'unicast':
      if (p.slice(0, 6).every((x) => x === 0)) {
        // ::a.b.c.d, deprecated by RFC 4291 and never routed (:: and ::1 have ranges of their own).
        return embeddedRefusal('IPv4-compatible', v4From(p[6], p[7])) ?? 'IPv4-compatible (deprecated by RFC 4291, not routable)';
      }
      return v6.match(GLOBAL_UNICAST_V6) ? null : 'outside the global unicast range 2000::/3';
    default:
      return RANGE_WORDS[range] ?? range;
  }
}

/**
 * Why `address` (an IP address in the strict form `net.isIP` accepts) is not a globally routable
 * unicast address, or null when it is one. Embedded IPv4 addresses are unwrapped and vetted.
 */
export function addressRefusal(address: string): string | null {
  const ip = parseStrict(address);
  return ip ? refusalOf(ip) : 'not an IP address';
}

/** Parses an address that both Node's socket layer and ipaddr.js accept, so that both read it alike. */
function parseStrict(address: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  return net.isIP(address) !== 0 && ipaddr.isValid(address) ? ipaddr.parse(address) : null;
}

/** The URL's host as the socket sees it: brackets of an IPv6 literal removed, lower case. */
export function targetHost(url: URL): string {
  return url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
}

function sameHostName(a: string, b: string): boolean {
  return a.replace(/\.$/, '') === b.trim().toLowerCase().replace(/\.$/, '');
}

/** A short, safe name for why a resolver failed: its error code, never its whole message. */
function failureCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[A-Z0-9_]{1,64}$/.test(code) ? code : 'resolver error';
}

const systemResolver: Resolver = (hostname) =>
  dns.promises.lookup(hostname, { all: true, order: 'verbatim', hints: dns.ADDRCONFIG });

/** Resolves `hostname` once and returns its addresses, every one vetted (or all of them when private ones are allowed). */
async function resolveVetted(hostname: string, resolve: Resolver, allowPrivate: boolean): Promise<LookupAddress[]> {
  let answer: unknown;
  try {
    answer = await resolve(hostname);
  } catch (err) {
    throw new TargetRefused(`webhook host ${hostname} could not be resolved (${failureCode(err)}); nothing was sent`, { retryable: true, cause: err });
  }
  if (!Array.isArray(answer) || answer.length === 0) {
    throw new TargetRefused(`webhook host ${hostname} resolved to no address; nothing was sent`, { retryable: true });
  }
  return answer.map((entry: unknown) => {
    const raw = (entry as { address?: unknown } | null)?.address;
    const ip = typeof raw === 'string' ? parseStrict(raw) : null;
    if (!ip) {
      throw new TargetRefused(`webhook host ${hostname} resolved to ${JSON.stringify(String(raw).slice(0, 64))}, which is not an IP address; nothing was sent`, {
        retryable: false,
      });
    }
    const why = allowPrivate ? null : refusalOf(ip);
    if (why) throw new TargetRefused(`webhook host ${hostname} resolves to ${ip.toString()}, not a public address (${why}); ${PRIVATE_HINT}`, { retryable: false });
    // The canonical form of what was vetted is what the socket gets, never the resolver's own spelling.
    return { address: ip.toString(), family: ip.kind() === 'ipv4' ? 4 : 6 };
  });
}

function wantedFamily(family: LookupOptions['family']): 0 | 4 | 6 {
  if (family === 4 || family === 'IPv4') return 4;
  if (family === 6 || family === 'IPv6') return 6;
  return 0;
}

/** A socket `lookup` that resolves through `resolve` once and hands the socket only vetted addresses. */
function vettingLookup(resolve: Resolver, allowPrivate: boolean): net.LookupFunction {
  return (hostname, options, callback) => {
    resolveVetted(hostname, resolve, allowPrivate).then(
      (addresses) => {
        const family = wantedFamily(options.family);
        const usable = family === 0 ? addresses : addresses.filter((a) => a.family === family);
        const first = usable[0];
        if (!first) {
          callback(new TargetRefused(`webhook host ${hostname} has no IPv${family} address; nothing was sent`, { retryable: true }), '');
        } else if (options.all) {
          callback(null, usable);
        } else {
          callback(null, first.address, first.family);
        }
      },
      (err: unknown) => callback(err instanceof Error ? err : new Error(String(err)), ''),
    );
  };
}

/** A lookup for a socket that connects to a literal; Node never calls it (kept so no default lookup can run). */
const noLookup: net.LookupFunction = (hostname, _options, callback) => {
  callback(new TargetRefused(`webhook address ${hostname} was to be connected to without a lookup`, { retryable: false }), '');
};

/**
 * Checks `url` against `policy` and plans the connection. Throws TargetRefused (non-retryable) for a host
 * outside DSX_WEBHOOK_ALLOWED_HOSTS or a literal that is not a public address; a name is vetted later,
 * by the plan's `lookup`, when the socket resolves it.
 */
export function planConnection(url: URL, policy: TargetPolicy): ConnectionPlan {
  const host = targetHost(url);
  if (policy.allowedHosts.length > 0 && !policy.allowedHosts.some((allowed) => sameHostName(host, allowed))) {
    throw new TargetRefused(`webhook host ${host} is not in DSX_WEBHOOK_ALLOWED_HOSTS; add it there or change the channel's URL`, { retryable: false });
  }
  const ip = parseStrict(host);
  if (ip) {
    const why = policy.allowPrivate ? null : refusalOf(ip);
    if (why) throw new TargetRefused(`webhook address ${ip.toString()} is not a public address (${why}); ${PRIVATE_HINT}`, { retryable: false });
    return { host: ip.toString(), lookup: noLookup };
  }
  return { host, servername: host, lookup: vettingLookup(policy.resolve ?? systemResolver, policy.allowPrivate) };
}
