import { eppEngineId } from './epp-config.js';

/**
 * The EPP's endpoints both ways: the `ip:port` Envoy speaks of, the engine id the fleet core routes to.
 * Endpoints found at run time join and leave it (dns-endpoint-discovery.ts); `engineIds` is then the same
 * set, changed in place, so an exchange reads it without a copy per request.
 */
export class EndpointDirectory {
  readonly engineIds: ReadonlySet<string>;
  private readonly ids = new Set<string>();
  private readonly idByAddress = new Map<string, string>();
  private readonly addressById = new Map<string, string>();

  constructor(addresses: readonly string[]) {
    for (const address of addresses) this.add(address);
    this.engineIds = this.ids;
  }

  add(address: string): string {
    const id = eppEngineId(address);
    this.idByAddress.set(address, id);
    this.addressById.set(id, address);
    this.ids.add(id);
    return id;
  }

  /**
   * Forgets an endpoint, once its engine has left the fleet: until then its address still maps to its id,
   * so the response path of a request placed on it reads the served endpoint.
   */
  remove(address: string): void {
    const id = this.idByAddress.get(address);
    if (id === undefined) return;
    this.idByAddress.delete(address);
    this.addressById.delete(id);
    this.ids.delete(id);
  }

  idOf(address: string): string | undefined {
    return this.idByAddress.get(address.trim());
  }

  /** undefined for an engine that is no endpoint of this picker (it never appears in a destination). */
  addressOf(engineId: string): string | undefined {
    return this.addressById.get(engineId);
  }
}
