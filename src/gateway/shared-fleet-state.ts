import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Clock } from '../core/clock.js';
import { serviceBands } from '../core/service-tiers.js';
import type { FleetCore } from '../fleet/fleet-core.js';
import type { ReplicaHealthChange } from '../routing/replica-health.js';

/**
 * What several gateways in front of the same engines share about the fleet through Redis (with
 * `state.store: redis`): VTC service per band and tenant, and replica ejections. Without it each gateway
 * sees only its own share of a tenant's service (a heavy tenant spread over three gateways looks light
 * to each), and a replica one gateway ejected keeps getting failing requests from the others.
 *
 * It runs beside the fleet core, never inside it: every `syncIntervalMs` one MULTI pushes the tokens
 * served here since the last round, publishes this gateway's ejections and readmissions, and reads the
 * fleet's totals and its peers' health entries back, which it feeds to the core through plain methods
 * the simulator could call as well (`setServiceElsewhere`, `onPeerEjection`, `onPeerReadmission`). No
 * request waits on Redis: while it is away the core runs on this gateway's own figures, service keeps
 * accumulating here, and everything is pushed once it is back.
 *
 * Redis layout (prefix `gravity:fleet:`):
 * - `service:<band>`: a hash of weighted tokens per tenant (HINCRBYFLOAT), plus `~incarnation`, a random
 *   id set by the first push into a fresh hash. A hash that vanished (Redis restarted empty, or the band
 *   was idle fleet-wide for `serviceIdleTtlMs`) comes back with another id, and each gateway then counts
 *   its own share anew instead of subtracting pushes the hash no longer holds.
 * - `health:<replica>`: this replica's latest ejection (expiring when the ejection ends) or readmission
 *   (expiring after `readmissionMarkMs`), with a random id so each peer applies it once.
 */
export interface SharedFleetStateOptions<Tag> {
  /** A connection of its own: a slow round must not delay admissions' scripts. */
  redis: Redis;
  core: FleetCore<Tag>;
  clock: Clock;
  syncIntervalMs: number;
  log: (message: string, details: Record<string, unknown>) => void;
}

const keyPrefix = 'gravity:fleet:';
const incarnationField = '~incarnation';
/**
 * How long a band's fleet totals outlive the last push into them. VTC counters only ever grow, and a
 * tenant back from idleness is lifted to the backlogged minimum anyway, so totals matter only while a
 * band is busy somewhere; an hour of fleet-wide silence in a band lets its hash go.
 */
const serviceIdleTtlMs = 3_600_000;
/** Every band name a gateway may share under: the tiers with tier bands, `all` without. */
const sharedBands: readonly string[] = [...serviceBands, 'all'];

interface HealthEntry {
  id: string;
  /** The gateway that published it (its own entries are not applied back to it). */
  by: string;
  kind: ReplicaHealthChange['kind'];
  error: string | null;
}

export class SharedFleetState<Tag> {
  /** This process among the fleet's gateways, for telling its own health entries from its peers'. */
  private readonly gatewayId = randomUUID();
  /** Tokens served here and not yet pushed, per band and tenant (kept while Redis is away). */
  private readonly unpushed = new Map<string, Map<string, number>>();
  /** Per band: the hash incarnation last seen, and what this gateway has pushed into it per tenant. */
  private readonly pushed = new Map<string, { incarnation: string | null; tenants: Map<string, number> }>();
  /** Tenants given service elsewhere per band, so one gone from the fleet's hash goes back to zero. */
  private readonly elsewhere = new Map<string, Set<string>>();
  /** Ejections and readmissions decided here and not yet published, the latest per replica. */
  private readonly unpublished = new Map<string, ReplicaHealthChange>();
  /** The id of the last peer health entry applied, per replica. */
  private readonly applied = new Map<string, string>();
  private readonly readmissionMarkMs: number;
  private timer: NodeJS.Timeout | undefined;
  private syncing = false;
  private available = true;

  constructor(private readonly options: SharedFleetStateOptions<Tag>) {
    // Long enough for every peer to read a readmission at least a few times, however slow its rounds.
    this.readmissionMarkMs = Math.max(5000, 10 * options.syncIntervalMs);
  }

  start(): void {
    this.options.core.health.onChange = (change) => this.unpublished.set(change.replica, change);
    this.timer = setInterval(() => void this.sync(), this.options.syncIntervalMs);
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.options.core.health.onChange = null;
  }

  /** One round: push, publish, pull. A round still waiting on Redis makes the next one a no-op. */
  async sync(): Promise<void> {
    if (this.syncing) return;
    this.syncing = true;
    const publishing = [...this.unpublished.values()];
    this.unpublished.clear();
    try {
      this.options.core.drainServedTokens((band, tenant, tokens) => {
        let tenants = this.unpushed.get(band);
        if (!tenants) {
          tenants = new Map();
          this.unpushed.set(band, tenants);
        }
        tenants.set(tenant, (tenants.get(tenant) ?? 0) + tokens);
      });
      const replicas = this.options.core.replicas.map((replica) => replica.id);
      const transaction = this.options.redis.multi();
      for (const band of sharedBands) {
        const key = `${keyPrefix}service:${band}`;
        const tenants = this.unpushed.get(band);
        if (tenants && tenants.size > 0) {
          transaction.hsetnx(key, incarnationField, randomUUID());
          for (const [tenant, tokens] of tenants) transaction.hincrbyfloat(key, tenant, tokens);
          transaction.pexpire(key, serviceIdleTtlMs);
        }
        transaction.hgetall(key);
      }
      for (const change of publishing) {
        const entry: HealthEntry = {
          id: randomUUID(),
          by: this.gatewayId,
          kind: change.kind,
          error: change.kind === 'ejected' ? change.error : null,
        };
        const lifetimeMs = Math.max(
          1,
          Math.ceil(change.kind === 'ejected' ? change.ejectedForMs : this.readmissionMarkMs),
        );
        transaction.set(`${keyPrefix}health:${change.replica}`, JSON.stringify(entry), 'PX', lifetimeMs);
      }
      for (const replica of replicas) {
        transaction.get(`${keyPrefix}health:${replica}`);
        transaction.pttl(`${keyPrefix}health:${replica}`);
      }
      const results = await transaction.exec();
      if (!results) throw new Error('the transaction was discarded');
      const replies: unknown[] = [];
      for (const [error, reply] of results) {
        if (error) throw error;
        replies.push(reply);
      }
      this.applyService(replies);
      this.applyHealth(replies.slice(replies.length - 2 * replicas.length), replicas);
      this.unpushed.clear();
      if (!this.available) {
        this.available = true;
        this.options.log(
          'shared fleet state: Redis is back; fairness and replica health are shared again',
          {},
        );
      }
    } catch (error) {
      // Nothing is lost: unpushed service waits for the next round, unpublished changes too (unless a
      // newer one for the same replica came meanwhile).
      for (const change of publishing)
        if (!this.unpublished.has(change.replica)) this.unpublished.set(change.replica, change);
      if (this.available) {
        this.available = false;
        this.options.log(
          'shared fleet state: Redis unavailable; fairness and replica health are local to this gateway until it is back',
          { error: error instanceof Error ? error.message : String(error) },
        );
      }
    } finally {
      this.syncing = false;
    }
  }

  /** The replies of the service part of the round, in the order `sync` queued them. */
  private applyService(replies: readonly unknown[]): void {
    let index = 0;
    for (const band of sharedBands) {
      const pushedNow = this.unpushed.get(band);
      if (pushedNow && pushedNow.size > 0) index += 2 + pushedNow.size; // HSETNX, HINCRBYFLOATs, PEXPIRE
      const totals = replies[index++] as Record<string, string>;
      const incarnation = totals[incarnationField] ?? null;
      let own = this.pushed.get(band);
      if (!own || own.incarnation !== incarnation) {
        // A fresh hash holds none of what was pushed before, only this round's pushes (same MULTI).
        own = { incarnation, tenants: new Map() };
        this.pushed.set(band, own);
      }
      if (pushedNow)
        for (const [tenant, tokens] of pushedNow)
          own.tenants.set(tenant, (own.tenants.get(tenant) ?? 0) + tokens);
      const previous = this.elsewhere.get(band);
      const current = new Set<string>();
      for (const [tenant, value] of Object.entries(totals)) {
        if (tenant === incarnationField) continue;
        const served = Number(value) - (own.tenants.get(tenant) ?? 0);
        // Float sums may leave a hair below zero when only this gateway served the tenant.
        this.options.core.setServiceElsewhere(band, tenant, Math.max(0, served));
        current.add(tenant);
      }
      if (previous)
        for (const tenant of previous)
          if (!current.has(tenant)) this.options.core.setServiceElsewhere(band, tenant, 0);
      if (current.size > 0) this.elsewhere.set(band, current);
      else this.elsewhere.delete(band);
    }
  }

  /** GET and PTTL per replica: peers' entries, each applied once. */
  private applyHealth(replies: readonly unknown[], replicas: readonly string[]): void {
    const nowMs = this.options.clock.nowMs();
    for (let index = 0; index < replicas.length; index++) {
      const replica = replicas[index] as string;
      const value = replies[2 * index] as string | null;
      const remainingMs = replies[2 * index + 1] as number;
      if (value === null || remainingMs <= 0) continue;
      let entry: HealthEntry;
      try {
        entry = JSON.parse(value) as HealthEntry;
      } catch {
        continue; // not ours to read (a foreign writer): ignored rather than trusted
      }
      if (entry.by === this.gatewayId || this.applied.get(replica) === entry.id) continue;
      this.applied.set(replica, entry.id);
      if (entry.kind === 'ejected')
        this.options.core.onPeerEjection(replica, nowMs, remainingMs, entry.error ?? null);
      else this.options.core.onPeerReadmission(replica);
    }
  }
}
