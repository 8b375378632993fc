/**
 * Which hosts notification webhooks may reach. Private, loopback and link-local addresses are refused
 * unless DSX_WEBHOOK_ALLOW_PRIVATE is set (a webhook must not become a way into the internal network),
 * and DSX_WEBHOOK_ALLOWED_HOSTS, when set, restricts targets to those host names. Names are resolved
 * and every address checked, so a public name pointing at a private address is refused too.
 */
import dns from 'node:dns/promises';
import net from 'node:net';
import { WebhookError } from './webhook.ts';

export interface TargetPolicy {
  /** Host names allowed (exact, case-insensitive); empty = any public host. */
  allowedHosts: string[];
  allowPrivate: boolean;
}

const PRIVATE_V4: [string, number][] = [
  ['10.0.0.0', 8], ['172.16.0.0', 12], ['192.168.0.0', 16], ['127.0.0.0', 8], ['169.254.0.0', 16], ['100.64.0.0', 10], ['0.0.0.0', 8],
];

function v4ToInt(a: string): number {
  return a.split('.').reduce((n, o) => (n << 8) + Number(o), 0) >>> 0;
}

/** True for loopback, private, link-local, CGNAT and unspecified addresses (IPv4 and IPv6). */
export function isPrivateAddress(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  const a = mapped ? mapped[1]! : address;
  if (net.isIPv4(a)) {
    const n = v4ToInt(a);
    return PRIVATE_V4.some(([base, bits]) => (n >>> (32 - bits)) === (v4ToInt(base) >>> (32 - bits)));
  }
  const l = a.toLowerCase();
  return l === '::1' || l === '::' || /^f[cd]/.test(l) || /^fe[89ab]/.test(l);
}

/** Throws a non-retryable WebhookError when the policy refuses `url`. */
export async function checkWebhookTarget(url: string, policy: TargetPolicy): Promise<void> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new WebhookError(`webhook URL ${JSON.stringify(url)} is not a valid URL`, { retryable: false });
  }
  const host = u.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (policy.allowedHosts.length && !policy.allowedHosts.includes(host)) {
    throw new WebhookError(`webhook host ${host} is not in DSX_WEBHOOK_ALLOWED_HOSTS`, { retryable: false });
  }
  if (policy.allowPrivate) return;
  const addresses = net.isIP(host) ? [host] : (await dns.lookup(host, { all: true }).catch(() => [])).map((a) => a.address);
  const refused = addresses.find(isPrivateAddress);
  if (refused) {
    throw new WebhookError(`webhook host ${host} resolves to private or loopback address ${refused}; set DSX_WEBHOOK_ALLOW_PRIVATE=true to allow it`, {
      retryable: false,
    });
  }
}
