import { Resolver } from 'node:dns/promises';
import type { EngineAdapter } from '../engines/engine-adapter.js';
import type { Gateway } from '../gateway/gateway.js';
import type { EndpointDirectory } from './endpoint-directory.js';

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
  private readonly members = new Set<string>();
  /** Resolutions in a row that did not list a member. */
  private readonly absences = new Map<string, number>();
  private failing = false;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: DnsEndpointDiscoveryOptions) {}

  /** Resolves once (awaited: the EPP starts with the endpoints DNS names), then on the interval. */
  async start(): Promise<void> {
    await this.resolveNow();
    this.schedule();
  }

  /** The addresses DNS made members, in the order they joined. */
  get endpoints(): string[] {
    return [...this.members];
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
    const { name, port, fixed, log } = this.options;
    let ips: string[];
    try {
      ips = await this.options.resolve(name);
    } catch (error) {
      if (!this.failing)
        log('EPP endpoint discovery: DNS resolution failed; keeping the current endpoints', {
          name,
          endpoints: this.members.size,
          error: error instanceof Error ? error.message : String(error),
        });
      this.failing = true;
      return;
    }
    if (this.closed) return;
    if (this.failing) log('EPP endpoint discovery: DNS resolution works again', { name });
    this.failing = false;
    const found = new Set(ips.map((ip) => endpointAddress(ip, port)));
    const newcomers: string[] = [];
    for (const address of found) {
      this.absences.delete(address);
      if (!this.members.has(address) && !fixed.has(address)) newcomers.push(address);
    }
    // Side by side: a joining engine first asks its server for its models, which may take a while
    // (a pod listed before its server listens), and a scale-up brings several at once.
    await Promise.all(
      newcomers.map(async (address) => {
        try {
          await this.options.join(address);
          this.members.add(address);
        } catch (error) {
          // Not a member: the next resolution that lists it tries again.
          log('EPP endpoint discovery: an endpoint could not join', {
            address,
            error: error instanceof Error ? error.message : String(error),
          });
        }
      }),
    );
    for (const address of [...this.members]) {
      if (found.has(address)) continue;
      const absent = (this.absences.get(address) ?? 0) + 1;
      if (absent < 2) {
        this.absences.set(address, absent);
        continue;
      }
      this.absences.delete(address);
      this.members.delete(address);
      // Not awaited: its running requests may take minutes, and discovery goes on meanwhile.
      this.options.leave(address).catch((error: unknown) =>
        log('EPP endpoint discovery: an endpoint did not leave cleanly', {
          address,
          error: error instanceof Error ? error.message : String(error),
        }),
      );
    }
  }
}

/**
 * Starts discovery for `epp.discovery.dns`: an address that joins becomes an engine (made by
 * `createEngine`, as a static endpoint's would be), a replica of the gateway's fleet core and an entry
 * of the EPP's directory; one that leaves is retired from the gateway (its running requests end, its
 * queued ones are answered 503) and, once removed, dropped from the directory.
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
  const { gateway, directory } = options;
  const discovery = new DnsEndpointDiscovery({
    ...options.dns,
    resolve: options.resolve ?? dnsAddressResolver(),
    fixed: new Set(options.fixed),
    join: async (address) => {
      // In the directory first: once the core may route to it, its address must be known.
      directory.add(address);
      try {
        await gateway.addEngine(await options.createEngine(address), { placed: true });
      } catch (error) {
        directory.remove(address);
        throw error;
      }
    },
    leave: async (address) => {
      const id = directory.idOf(address);
      if (id === undefined) return;
      const { retired, removed } = gateway.retireEngine(id);
      if (!retired) return;
      await removed;
      // Back in DNS while it drained: it was taken back, and stays in the directory.
      if (!gateway.engines.some((engine) => engine.id === id)) directory.remove(address);
    },
    log: options.log,
  });
  await discovery.start();
  return discovery;
}
