import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import proxyaddr from 'proxy-addr';
import type { Config } from '../config.ts';

export type ClientIpResolver = (raw: IncomingMessage) => string | null;

/**
 * The one function that decides a request's client address. `X-Forwarded-For`
 * is believed only hop by hop from peers listed in TRUST_PROXY; anyone else's
 * header is ignored, so it cannot dodge rate limits.
 */
export function clientIpResolver(trustProxy: Config['trustProxy']): ClientIpResolver {
  const trust = trustProxy === true ? () => true : trustProxy === false ? () => false : proxyaddr.compile(trustProxy);
  return (raw) => {
    const peer = raw.socket?.remoteAddress;
    if (!peer) return null;
    // A trusted proxy that writes `1.2.3.4:5678` or garbage must not make
    // the address a free-form string: fall back to the peer itself.
    const address = normalizeAddress(proxyaddr(raw, trust)) ?? normalizeAddress(peer);
    return address ?? peer;
  };
}

/** `::ffff:1.2.3.4` → `1.2.3.4`; `1.2.3.4:80` and `[::1]:443` lose the port; anything else not an IP → null. */
function normalizeAddress(value: string): string | null {
  let address = value.trim();
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(address);
  if (bracketed) address = bracketed[1] as string;
  else if (/^[\d.]+:\d+$/.test(address)) address = address.slice(0, address.lastIndexOf(':'));
  if (address.toLowerCase().startsWith('::ffff:') && isIP(address.slice(7)) === 4) address = address.slice(7);
  return isIP(address) ? address.toLowerCase() : null;
}
