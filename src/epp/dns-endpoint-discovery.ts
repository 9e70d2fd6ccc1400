import { Resolver } from 'node:dns/promises';
import type { EngineAdapter } from '../engines/engine-adapter.js';
import type { Gateway } from '../gateway/gateway.js';
import type { EndpointDirectory } from './endpoint-directory.js';
import { EndpointMembership, gatewayMembership } from './endpoint-membership.js';

/** A name's current addresses, IPv4 and IPv6; throws when the name could not be looked up at all. */
export type AddressResolver = (name: string) => Promise<string[]>;

/** Answers that say "no such records", as opposed to "could not ask": the name has no address now. */
const noRecords = new Set(['ENOTFOUND', 'ENODATA']);

/**
 * Resolves A and AAAA records with node:dns (`setServers` on the resolver picks the DNS server). A name
 * with no records of a family (NXDOMAIN, NODATA: a headless Service whose pods are all gone) resolves to
 * none of it; any other failure — timeout, refused, SERVFAIL — fails the whole resolution, so that one
 * family's outage is not taken for its endpoints having left.
 */
export function dnsAddressResolver(resolver: Resolver = new Resolver()): AddressResolver {
  return async (name) => {
    const families = await Promise.allSettled([
      resolver.resolve4(name, { ttl: true }),
      resolver.resolve6(name, { ttl: true }),
    ]);
    const addresses: string[] = [];
    for (const family of families) {
      if (family.status === 'fulfilled') {
        for (const record of family.value) addresses.push(record.address);
        continue;
      }
      const code = (family.reason as NodeJS.ErrnoException).code ?? '';
      if (!noRecords.has(code)) throw family.reason;
    }
    return addresses;
  };
}

/** `ip:port` as Envoy and the EPP's directory write it (IPv6 in brackets). */
export function endpointAddress(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

export interface DnsEndpointDiscoveryOptions {
  name: string;
  port: number;
  intervalMs: number;
  resolve: AddressResolver;
  /** Members whatever DNS says: the static `epp.endpoints`. */
  fixed: ReadonlySet<string>;
  /** Makes an endpoint a member (an engine, a replica of the fleet core); a rejection leaves it out. */
  join(address: string): Promise<void>;
  /** Takes a member out; the promise settles once its requests have ended and it is gone. */
  leave(address: string): Promise<void>;
  log(message: string, details: Record<string, unknown>): void;
}

/**
 * The EPP's endpoints from DNS, resolved every `intervalMs` (the next resolution is timed from the end
 * of the last, so two never overlap). A new address joins at once; one missing from two resolutions in
 * a row leaves — a DNS answer that drops an address once (a flapping answer, a pod briefly unready)
 * churns no replica. A failed resolution changes nothing and is logged once per outage.
 */
export class DnsEndpointDiscovery {
  private readonly membership: EndpointMembership;
  private failing = false;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: DnsEndpointDiscoveryOptions) {
    this.membership = new EndpointMembership({ ...options, absencesToLeave: 2 });
  }

  /** Resolves once (awaited: the EPP starts with the endpoints DNS names), then on the interval. */
  async start(): Promise<void> {
    await this.resolveNow();
    this.schedule();
  }

  /** The addresses DNS made members, in the order they joined. */
  get endpoints(): string[] {
    return this.membership.endpoints;
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private schedule(): void {
    if (this.closed) return;
    this.timer = setTimeout(() => {
      void this.resolveNow().finally(() => this.schedule());
    }, this.options.intervalMs);
    this.timer.unref();
  }

  /** One resolution and what it changes. */
  async resolveNow(): Promise<void> {
    const { name, port, log } = this.options;
    let ips: string[];
    try {
      ips = await this.options.resolve(name);
    } catch (error) {
      if (!this.failing)
        log('EPP endpoint discovery: DNS resolution failed; keeping the current endpoints', {
          name,
          endpoints: this.membership.endpoints.length,
          error: error instanceof Error ? error.message : String(error),
        });
      this.failing = true;
      return;
    }
    if (this.closed) return;
    if (this.failing) log('EPP endpoint discovery: DNS resolution works again', { name });
    this.failing = false;
    await this.membership.reconcile(new Set(ips.map((ip) => endpointAddress(ip, port))));
  }
}

/**
 * Starts discovery for `epp.discovery.dns`, its endpoints joining and leaving the gateway as
 * `gatewayMembership` (endpoint-membership.ts) does it.
 */
export async function startDnsEndpointDiscovery(options: {
  dns: { name: string; port: number; intervalMs: number };
  fixed: readonly string[];
  gateway: Gateway;
  directory: EndpointDirectory;
  createEngine: (address: string) => Promise<EngineAdapter>;
  resolve?: AddressResolver | undefined;
  log: (message: string, details: Record<string, unknown>) => void;
}): Promise<DnsEndpointDiscovery> {
  const discovery = new DnsEndpointDiscovery({
    ...options.dns,
    resolve: options.resolve ?? dnsAddressResolver(),
    fixed: new Set(options.fixed),
    ...gatewayMembership(options),
    log: options.log,
  });
  await discovery.start();
  return discovery;
}
