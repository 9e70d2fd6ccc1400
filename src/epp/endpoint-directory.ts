import { eppEngineId } from './epp-config.js';

/** The EPP's endpoints both ways: the `ip:port` Envoy speaks of, the engine id the fleet core routes to. */
export class EndpointDirectory {
  readonly engineIds: ReadonlySet<string>;
  private readonly idByAddress = new Map<string, string>();
  private readonly addressById = new Map<string, string>();

  constructor(addresses: readonly string[]) {
    for (const address of addresses) {
      const id = eppEngineId(address);
      this.idByAddress.set(address, id);
      this.addressById.set(id, address);
    }
    this.engineIds = new Set(this.addressById.keys());
  }

  idOf(address: string): string | undefined {
    return this.idByAddress.get(address.trim());
  }

  /** undefined for an engine that is no endpoint of this picker (it never appears in a destination). */
  addressOf(engineId: string): string | undefined {
    return this.addressById.get(engineId);
  }
}
