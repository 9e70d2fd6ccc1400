import FlatQueue from 'flatqueue';
import TinyQueue from 'tinyqueue';
import { type ServiceBand, serviceBands } from '../core/service-tiers.js';
import type {
  AdmissionDecision,
  FairnessPolicy,
  FlowView,
  OrderingPolicy,
  SaturationPolicy,
  TierTargets,
} from './scheduling-policies.js';

export interface ReplicaSchedulerSettings {
  /** Requests the engine replica runs at once; the rest wait here, where they can be ordered. */
  slots: number;
  tiers: Record<ServiceBand, TierTargets>;
  /** Tiers as strict bands (priority first). Off: one queue for every tier (the FCFS baseline). */
  tierBands: boolean;
  ordering: OrderingPolicy;
  fairness: FairnessPolicy;
  saturation: SaturationPolicy;
  /** Share of slots batch work may never take, kept free for interactive arrivals. */
  batchReserveFraction: number;
  /**
   * Share of slots only `priority` may take: other tiers stop short of it, so a priority arrival finds a
   * slot at once instead of waiting for one to free (with tier bands only).
   */
  priorityReserveFraction: number;
  /** VTC weights of a prompt token and an output token (the paper's defaults: 1 and 2). */
  inputTokenWeight: number;
  outputTokenWeight: number;
}

export type ScheduledState = 'queued' | 'running' | 'done' | 'cancelled' | 'expired';

export class ScheduledRequest<Tag> {
  state: ScheduledState = 'queued';
  dispatchedMs: number | null = null;
  /** Its tenant's VTC counter in its band, from dispatch on (tokens then add without a lookup). */
  counter: VirtualCounter | null = null;

  constructor(
    readonly tag: Tag,
    readonly tenant: string,
    readonly tier: ServiceBand,
    readonly band: number,
    readonly arrivalOrder: number,
    readonly arrivalMs: number,
    readonly deadlineMs: number,
    readonly expiresAtMs: number,
    readonly promptTokens: number,
  ) {}
}

/** A tenant's requests within one band, in the ordering policy's order. */
class Flow<Tag> {
  readonly queue: TinyQueue<ScheduledRequest<Tag>>;
  live = 0;
  constructor(
    readonly tenant: string,
    ordering: OrderingPolicy,
  ) {
    this.queue = new TinyQueue<ScheduledRequest<Tag>>([], (a, b) => ordering.compare(a, b));
  }

  /** The head, dropping requests that left the queue (cancelled, expired). */
  head(): ScheduledRequest<Tag> | undefined {
    let head = this.queue.peek();
    while (head && head.state !== 'queued') {
      this.queue.pop();
      head = this.queue.peek();
    }
    return head;
  }
}

/** One band: a tier (or, without tier bands, every tier) with a flow and a VTC counter per tenant. */
class Band<Tag> {
  readonly flows = new Map<string, Flow<Tag>>();
  /** VTC counters by tenant, as cells a running request keeps, so a token adds without a map lookup. */
  readonly counters = new Map<string, VirtualCounter>();
  queued = 0;

  counter(tenant: string): VirtualCounter {
    let counter = this.counters.get(tenant);
    if (!counter) {
      counter = { servedTokens: 0, unsharedTokens: 0, elsewhereTokens: 0 };
      this.counters.set(tenant, counter);
    }
    return counter;
  }
}

/** A tenant's weighted tokens served within one band (VTC). */
interface VirtualCounter {
  /** What fairness compares: service here, lifts on backlog, and service elsewhere (`elsewhereTokens`). */
  servedTokens: number;
  /** Service here not yet taken by `drainServedTokens` (a driver sharing counters across gateways). */
  unsharedTokens: number;
  /** The part of `servedTokens` other gateways served, as last set by `setServiceElsewhere`. */
  elsewhereTokens: number;
}

export interface ReplicaSchedulerEvents<Tag> {
  /** The request may run now: the engine takes it. */
  onDispatch(request: ScheduledRequest<Tag>, nowMs: number): void;
  /** The request waited past its tier's bound: refuse it as overloaded. */
  onExpire(request: ScheduledRequest<Tag>, nowMs: number): void;
}

const ewmaWeight = 0.2;
/** Time constant of the arrival-rate estimate per band. */
const arrivalWindowMs = 10_000;

/**
 * The gateway's queue in front of one engine replica. It holds what the replica cannot run yet and
 * hands requests over as slots free, by tier band, tenant fairness (VTC) and deadline; it predicts each
 * newcomer's wait and lets the saturation policy shed or bound it.
 *
 * A state machine with no clock and no timers: callers pass the time and ask for `nextExpiryMs`, so the
 * gateway (with a timer) and the fleet simulator (with an event) drive the same object.
 */
export class ReplicaScheduler<Tag> {
  private readonly bands: Band<Tag>[];
  private readonly expiries = new FlatQueue<ScheduledRequest<Tag>>();
  private arrivals = 0;
  private running = 0;
  /** EWMA of slot holding time (dispatch → release) and of the engine's own TTFT (dispatch → first token). */
  private serviceMs: number | null = null;
  private engineTtftMs: number | null = null;
  /** Recent arrivals per band, exponentially decayed (time constant arrivalWindowMs): arrival rates. */
  private readonly arrivalWeights: number[];
  private lastArrivalMs = 0;
  shedTotal = 0;
  expiredTotal = 0;

  constructor(
    private readonly settings: ReplicaSchedulerSettings,
    private readonly events: ReplicaSchedulerEvents<Tag>,
  ) {
    this.bands = Array.from({ length: settings.tierBands ? serviceBands.length : 1 }, () => new Band<Tag>());
    this.arrivalWeights = this.bands.map(() => 0);
  }

  /** Counts an arrival in its band's decayed arrival count (rate ≈ weight / window). */
  private countArrival(band: number, nowMs: number): void {
    const decay = Math.exp(-Math.max(0, nowMs - this.lastArrivalMs) / arrivalWindowMs);
    for (let index = 0; index < this.arrivalWeights.length; index++)
      this.arrivalWeights[index] = (this.arrivalWeights[index] as number) * decay;
    this.arrivalWeights[band] = (this.arrivalWeights[band] as number) + 1;
    this.lastArrivalMs = nowMs;
  }

  get queuedRequests(): number {
    let queued = 0;
    for (const band of this.bands) queued += band.queued;
    return queued;
  }

  get runningRequests(): number {
    return this.running;
  }

  private bandOf(tier: ServiceBand): number {
    return this.settings.tierBands ? serviceBands.indexOf(tier) : 0;
  }

  /**
   * How long a newcomer of `tier` would wait for a slot: the requests ahead of it (its band and the bands
   * above) served at the replica's recent pace, stretched by the share of capacity that later arrivals
   * of higher bands will take ahead of it — a strict-priority queue's wait grows as 1 / (1 − σ), σ the
   * load of the bands above. When those bands alone saturate the replica, the wait is unbounded.
   */
  predictWaitMs(tier: ServiceBand, nowMs: number): number {
    const band = this.bandOf(tier);
    let ahead = 0;
    for (let index = 0; index <= band; index++) ahead += (this.bands[index] as Band<Tag>).queued;
    const slots = tier === 'priority' ? this.settings.slots : this.nonPrioritySlots(nowMs);
    if (ahead === 0 && this.running < slots) return 0;
    if (this.serviceMs === null) return 0; // nothing observed yet: no grounds to refuse anyone
    const baseMs = ((ahead + 1) / slots) * this.serviceMs;
    let higherLoad = 0;
    for (let index = 0; index < band; index++)
      higherLoad +=
        ((this.arrivalWeights[index] as number) / arrivalWindowMs) * (this.serviceMs / this.settings.slots);
    return higherLoad >= 1 ? Number.POSITIVE_INFINITY : baseMs / (1 - higherLoad);
  }

  /**
   * A request arrives. Returns the saturation policy's decision; a queued request is dispatched at once
   * when a slot is free (`onDispatch` fires before this returns).
   */
  submit(
    options: { tag: Tag; tenant: string; tier: ServiceBand; promptTokens: number },
    nowMs: number,
  ): { request: ScheduledRequest<Tag> | null; decision: AdmissionDecision } {
    const targets = this.settings.tiers[options.tier];
    this.countArrival(this.bandOf(options.tier), nowMs);
    const predictedWaitMs = this.predictWaitMs(options.tier, nowMs);
    const decision = this.settings.saturation.decide({
      tier: options.tier,
      nowMs,
      predictedWaitMs,
      predictedTtftMs: predictedWaitMs + (this.engineTtftMs ?? 0),
      targets,
    });
    if (decision.kind === 'shed') {
      this.shedTotal++;
      return { request: null, decision };
    }
    const request = new ScheduledRequest(
      options.tag,
      options.tenant,
      options.tier,
      this.bandOf(options.tier),
      this.arrivals++,
      nowMs,
      nowMs + targets.ttftMs,
      decision.expiresAtMs,
      options.promptTokens,
    );
    this.enqueue(request);
    if (Number.isFinite(request.expiresAtMs)) this.expiries.push(request, request.expiresAtMs);
    this.pump(nowMs);
    return { request, decision };
  }

  private enqueue(request: ScheduledRequest<Tag>): void {
    const band = this.bands[request.band] as Band<Tag>;
    let flow = band.flows.get(request.tenant);
    if (!flow) {
      flow = new Flow<Tag>(request.tenant, this.settings.ordering);
      band.flows.set(request.tenant, flow);
    }
    if (flow.live === 0) {
      // The tenant becomes backlogged: VTC lifts its counter so idle time is not banked credit.
      let minimum: number | null = null;
      for (const other of band.flows.values())
        if (other.live > 0) {
          const counter = band.counters.get(other.tenant)?.servedTokens ?? 0;
          minimum = minimum === null ? counter : Math.min(minimum, counter);
        }
      const counter = band.counter(request.tenant);
      counter.servedTokens = this.settings.fairness.counterOnBacklog(counter.servedTokens, minimum);
    }
    flow.queue.push(request);
    flow.live++;
    band.queued++;
  }

  private leaveQueue(request: ScheduledRequest<Tag>): void {
    const band = this.bands[request.band] as Band<Tag>;
    const flow = band.flows.get(request.tenant) as Flow<Tag>;
    flow.live--;
    band.queued--;
    // Empty flows of departed tenants are dropped so the tenant map stays bounded.
    if (flow.live === 0 && flow.queue.length === 0) band.flows.delete(request.tenant);
  }

  /** Hands free slots to waiting requests: bands in order, batch only in spare capacity. */
  private pump(nowMs: number): void {
    while (this.running < this.settings.slots) {
      const next = this.nextToDispatch(nowMs, this.running < this.nonPrioritySlots(nowMs));
      if (!next) return;
      this.leaveQueue(next);
      next.state = 'running';
      next.dispatchedMs = nowMs;
      this.running++;
      const counter = (this.bands[next.band] as Band<Tag>).counter(next.tenant);
      const promptCost = this.settings.inputTokenWeight * next.promptTokens;
      counter.servedTokens += promptCost;
      counter.unsharedTokens += promptCost;
      next.counter = counter;
      this.events.onDispatch(next, nowMs);
    }
  }

  /**
   * Slots tiers other than priority may fill. The reserve follows the priority tier's recent demand —
   * its arrival rate × how long a request holds a slot (Little's law), capped at
   * `priorityReserveFraction` of the slots — so a replica without priority traffic reserves nothing.
   */
  private nonPrioritySlots(nowMs: number): number {
    const settings = this.settings;
    if (!settings.tierBands) return settings.slots;
    const cap = Math.floor(settings.slots * settings.priorityReserveFraction);
    if (cap === 0) return settings.slots;
    const priorityWeight =
      (this.arrivalWeights[0] as number) *
      Math.exp(-Math.max(0, nowMs - this.lastArrivalMs) / arrivalWindowMs);
    const demand =
      this.serviceMs === null ? cap : Math.ceil((priorityWeight / arrivalWindowMs) * this.serviceMs - 0.05);
    return settings.slots - Math.min(cap, Math.max(0, demand));
  }

  private nextToDispatch(nowMs: number, othersMayRun: boolean): ScheduledRequest<Tag> | undefined {
    const settings = this.settings;
    for (let index = 0; index < this.bands.length; index++) {
      const band = this.bands[index] as Band<Tag>;
      if (band.queued === 0) continue;
      if (settings.tierBands && index > 0 && !othersMayRun) return undefined;
      if (settings.tierBands && serviceBands[index] === 'batch' && !this.spareCapacity(nowMs))
        return undefined;
      // Fast path: one tenant waiting in the band needs no fairness decision (and no allocation).
      if (band.flows.size === 1) {
        const only = band.flows.values().next().value as Flow<Tag>;
        if (only.head()) return only.queue.pop();
        continue;
      }
      const flows: Flow<Tag>[] = [];
      const views: FlowView[] = [];
      for (const flow of band.flows.values()) {
        const head = flow.head();
        if (!head) continue;
        flows.push(flow);
        views.push({
          tenant: flow.tenant,
          servedTokens: band.counters.get(flow.tenant)?.servedTokens ?? 0,
          headArrivalOrder: head.arrivalOrder,
        });
      }
      if (flows.length === 0) continue;
      const flow = flows[settings.fairness.pick(views)] as Flow<Tag>;
      return flow.queue.pop();
    }
    return undefined;
  }

  /** Batch runs only while every other band is empty and a reserve of slots stays free. */
  private spareCapacity(nowMs: number): boolean {
    const batchSlots = Math.max(
      1,
      Math.floor(this.nonPrioritySlots(nowMs) * (1 - this.settings.batchReserveFraction)),
    );
    return this.running < batchSlots;
  }

  /** Tokens the request produced: they count against its tenant in VTC. Per-token path: no clock read. */
  onTokens(request: ScheduledRequest<Tag>, tokens: number): void {
    const counter = request.counter ?? (this.bands[request.band] as Band<Tag>).counter(request.tenant);
    const cost = this.settings.outputTokenWeight * tokens;
    counter.servedTokens += cost;
    counter.unsharedTokens += cost;
  }

  /**
   * The name a band is shared under across gateways: its tier with tier bands, `all` without (one band
   * holds every tier then, and gateways configured alike agree on the name).
   */
  bandName(band: number): string {
    return this.settings.tierBands ? (serviceBands[band] as string) : 'all';
  }

  /**
   * Hands each tenant's weighted tokens served here since the last call to `visit` (band by its shared
   * name) and forgets them: what a driver pushes to the other gateways of a fleet. No allocation.
   */
  drainServedTokens(visit: (band: string, tenant: string, tokens: number) => void): void {
    for (let index = 0; index < this.bands.length; index++)
      for (const [tenant, counter] of (this.bands[index] as Band<Tag>).counters) {
        if (counter.unsharedTokens === 0) continue;
        visit(this.bandName(index), tenant, counter.unsharedTokens);
        counter.unsharedTokens = 0;
      }
  }

  /**
   * Weighted tokens other gateways of the fleet served this tenant in `band` (by its shared name), a
   * running total: the tenant's counter here moves by the change, so a tenant served heavily through
   * other gateways is as far behind here as if this queue had served it. The lift on backlog still
   * applies on top, so idle time elsewhere is not banked credit either. An unknown band is ignored.
   */
  setServiceElsewhere(band: string, tenant: string, servedTokens: number): void {
    const index = this.settings.tierBands
      ? serviceBands.indexOf(band as ServiceBand)
      : band === 'all'
        ? 0
        : -1;
    if (index < 0) return;
    const counter = (this.bands[index] as Band<Tag>).counter(tenant);
    counter.servedTokens += servedTokens - counter.elsewhereTokens;
    counter.elsewhereTokens = servedTokens;
  }

  /** The request's first token came out at `atMs`: the engine's own TTFT, for predicting newcomers'. */
  onFirstToken(request: ScheduledRequest<Tag>, atMs: number): void {
    if (request.dispatchedMs === null) return;
    const ttftMs = atMs - request.dispatchedMs;
    this.engineTtftMs =
      this.engineTtftMs === null ? ttftMs : this.engineTtftMs + ewmaWeight * (ttftMs - this.engineTtftMs);
  }

  /** The request is over (finished, failed or cancelled while running): its slot goes to the next. */
  release(request: ScheduledRequest<Tag>, nowMs: number): void {
    if (request.state === 'queued') {
      this.cancel(request, nowMs);
      return;
    }
    if (request.state !== 'running') return;
    request.state = 'done';
    this.running--;
    const heldMs = nowMs - (request.dispatchedMs as number);
    this.serviceMs =
      this.serviceMs === null ? heldMs : this.serviceMs + ewmaWeight * (heldMs - this.serviceMs);
    this.pump(nowMs);
  }

  /**
   * Takes every queued request out of the queue, oldest first, for a replica that leaves the fleet: its
   * driver refuses or re-places them. Running requests stay until they are released.
   */
  evictQueued(): ScheduledRequest<Tag>[] {
    const evicted: ScheduledRequest<Tag>[] = [];
    for (const band of this.bands)
      for (const flow of band.flows.values())
        for (const request of flow.queue.data) if (request.state === 'queued') evicted.push(request);
    evicted.sort((a, b) => a.arrivalOrder - b.arrivalOrder);
    // Collected first: leaving the queue may drop a tenant's flow from the map being walked.
    for (const request of evicted) {
      request.state = 'cancelled';
      this.leaveQueue(request);
    }
    return evicted;
  }

  /** A queued request whose client left: out of the queue at once. */
  cancel(request: ScheduledRequest<Tag>, nowMs: number): void {
    if (request.state === 'running') {
      this.release(request, nowMs);
      return;
    }
    if (request.state !== 'queued') return;
    request.state = 'cancelled';
    this.leaveQueue(request);
  }

  nextExpiryMs(): number {
    while (this.expiries.length > 0) {
      const head = this.expiries.peek() as ScheduledRequest<Tag>;
      if (head.state === 'queued') return this.expiries.peekValue() as number;
      this.expiries.pop();
    }
    return Number.POSITIVE_INFINITY;
  }

  /** Refuses every queued request whose wait bound has passed. */
  expire(nowMs: number): void {
    while (this.nextExpiryMs() <= nowMs) {
      const request = this.expiries.pop() as ScheduledRequest<Tag>;
      request.state = 'expired';
      this.leaveQueue(request);
      this.expiredTotal++;
      this.events.onExpire(request, nowMs);
    }
  }
}
