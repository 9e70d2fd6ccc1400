import { isIPv4, isIPv6 } from 'node:net';

/**
 * Whether a listen host only accepts connections from this machine. Names other than `localhost` are
 * treated as reachable from elsewhere (resolving them here could give a different answer than the OS
 * will when it binds).
 */
export function isLoopbackHost(host: string): boolean {
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  return bare.toLowerCase() === 'localhost' || isLoopbackAddress(bare);
}

/** Whether a peer address (as `socket.remoteAddress` gives it) is this machine's loopback. */
export function isLoopbackAddress(address: string | undefined): boolean {
  if (!address) return false;
  if (isIPv4(address)) return address.startsWith('127.');
  if (isIPv6(address)) {
    const lower = address.toLowerCase();
    if (lower === '::1' || lower === '0:0:0:0:0:0:0:1') return true;
    // An IPv4 loopback address as an IPv6 dual-stack socket reports it.
    return lower.startsWith('::ffff:127.');
  }
  return false;
}
