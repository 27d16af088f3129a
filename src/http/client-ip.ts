import type { IncomingMessage } from 'node:http';
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
    if (!raw.socket?.remoteAddress) return null;
    const address = proxyaddr(raw, trust);
    return address.startsWith('::ffff:') ? address.slice(7) : address;
  };
}
