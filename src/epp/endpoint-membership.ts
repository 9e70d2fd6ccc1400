import type { EngineAdapter } from '../engines/engine-adapter.js';
import type { Gateway } from '../gateway/gateway.js';
import type { EndpointDirectory } from './endpoint-directory.js';

export interface EndpointMembershipOptions {
  /** Members whatever discovery says: the static `epp.endpoints`. */
  fixed: ReadonlySet<string>;
  /**
   * Reconciliations in a row that must miss a member before it leaves: DNS answers flap (2), a
   * Kubernetes watch reports a pod's readiness as the API server holds it (1).
   */
  absencesToLeave: number;
  /** Makes an endpoint a member (an engine, a replica of the fleet core); a rejection leaves it out. */
  join(address: string): Promise<void>;
  /** Takes a member out; the promise settles once its requests have ended and it is gone. */
  leave(address: string): Promise<void>;
  log(message: string, details: Record<string, unknown>): void;
}

/**
 * The one place discovered endpoints join and leave, whatever found them (DNS, a Kubernetes watch): each
 * `reconcile` hands it the endpoint set found now. Calls made while one is being applied coalesce into
 * the latest set, so two never join the same address at once and a burst of watch events is one pass.
 */
export class EndpointMembership {
  private readonly members = new Set<string>();
  /** Reconciliations in a row that did not list a member. */
  private readonly absences = new Map<string, number>();
  private latest: ReadonlySet<string> | undefined;
  private applying: Promise<void> | undefined;

  constructor(private readonly options: EndpointMembershipOptions) {}

  /** The discovered members, in the order they joined. */
  get endpoints(): string[] {
    return [...this.members];
  }

  /** Settles once `found` (or a later set handed in meanwhile) has been applied. */
  reconcile(found: ReadonlySet<string>): Promise<void> {
    this.latest = found;
    this.applying ??= this.applyLatest();
    return this.applying;
  }

  private async applyLatest(): Promise<void> {
    try {
      while (this.latest !== undefined) {
        const found = this.latest;
        this.latest = undefined;
        await this.apply(found);
      }
    } finally {
      this.applying = undefined;
    }
  }

  private async apply(found: ReadonlySet<string>): Promise<void> {
    const { fixed, log } = this.options;
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
          // Not a member: the next reconciliation that lists it tries again.
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
      if (absent < this.options.absencesToLeave) {
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
 * Joining and leaving as the gateway does it: an address that joins becomes an engine (made by
 * `createEngine`, as a static endpoint's would be), a replica of the gateway's fleet core and an entry
 * of the EPP's directory; one that leaves is retired from the gateway (its running requests end, its
 * queued ones are answered 503) and, once removed, dropped from the directory.
 */
export function gatewayMembership(options: {
  gateway: Gateway;
  directory: EndpointDirectory;
  createEngine: (address: string) => Promise<EngineAdapter>;
}): Pick<EndpointMembershipOptions, 'join' | 'leave'> {
  const { gateway, directory } = options;
  return {
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
      // Found again while it drained: it was taken back, and stays in the directory.
      if (!gateway.engines.some((engine) => engine.id === id)) directory.remove(address);
    },
  };
}
