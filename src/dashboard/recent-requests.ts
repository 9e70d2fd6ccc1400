import type { Clock } from '../core/clock.js';
import { quantileOfSorted } from '../core/quantile.js';
import type { RequestContext } from '../core/request-context.js';
import type { RequestObserver } from '../core/request-observer.js';
import { type ServiceBand, serviceBand, serviceBands } from '../core/service-tiers.js';
import type { RecentRequestJson, TierQueueJson } from './dashboard-snapshot.js';

/** How many finished requests the dashboard can show: a few minutes of moderate traffic, ~1 MB at most. */
export const recentRequestCapacity = 2_000;

/**
 * The dashboard's view of requests: the last `recentRequestCapacity` finished ones (a ring buffer, so
 * memory does not grow with traffic) and the ones in flight. An observer after metering, so each
 * finished request carries its metered figures. Work per request is one small object and one sort of its
 * inter-token gaps, at the end of the request, off the per-token path.
 */
export class RecentRequests implements RequestObserver {
  private readonly ring: (RecentRequestJson | undefined)[];
  private nextSequence = 1;
  private readonly inFlight = new Set<RequestContext>();

  constructor(
    private readonly clock: Clock,
    capacity = recentRequestCapacity,
  ) {
    this.ring = new Array(capacity);
  }

  onRequestStart(context: RequestContext): void {
    this.inFlight.add(context);
  }

  onRequestEnd(context: RequestContext): void {
    this.inFlight.delete(context);
    const gaps = [...context.interTokenGapsMs].sort((a, b) => a - b);
    const finishedAtMs = context.finishedAtMs ?? this.clock.nowMs();
    const metered = context.metered;
    const sequence = this.nextSequence++;
    this.ring[sequence % this.ring.length] = {
      sequence,
      request_id: context.requestId,
      finished_at_ms: Math.round(context.receivedAtEpochMs + (finishedAtMs - context.receivedAtMs)),
      tier: serviceBand(context.serviceTier),
      tenant: context.tenant ?? 'anonymous',
      model: context.model,
      replica: context.engineId,
      status: context.status,
      error_code: context.errorCode,
      prompt_tokens: context.usage?.promptTokens ?? context.prefillTokens,
      cached_prompt_tokens: context.usage?.cachedPromptTokens ?? 0,
      completion_tokens: context.usage?.completionTokens ?? context.decodeTokens,
      ttft_ms: context.firstTokenAtMs === null ? null : context.firstTokenAtMs - context.receivedAtMs,
      itl_p50_ms: quantileOfSorted(gaps, 0.5),
      itl_p95_ms: quantileOfSorted(gaps, 0.95),
      energy_joules: metered?.energyJoules ?? null,
      energy_source: metered?.energySource ?? null,
      cost_usd: metered?.costUsd ?? null,
      price_usd: metered?.priceUsd ?? null,
      margin_usd: metered?.marginUsd ?? null,
      // The route's explanation stays the string the router wrote until a dashboard reads it (`after`):
      // most requests finish without anyone looking.
      route: context.route,
    };
  }

  get lastSequence(): number {
    return this.nextSequence - 1;
  }

  /** The finished requests recorded after `afterSequence` that the ring still holds, oldest first. */
  after(afterSequence: number): RecentRequestJson[] {
    const first = Math.max(afterSequence + 1, this.nextSequence - this.ring.length, 1);
    const found: RecentRequestJson[] = [];
    for (let sequence = first; sequence < this.nextSequence; sequence++) {
      const entry = this.ring[sequence % this.ring.length];
      if (!entry) continue;
      if (typeof entry.route === 'string') entry.route = parsedRoute(entry.route);
      found.push(entry);
    }
    return found;
  }

  /** Per tier: requests not yet started on an engine, and requests running on one. */
  queues(): TierQueueJson[] {
    const counts = new Map<ServiceBand, TierQueueJson>(
      serviceBands.map((tier) => [tier, { tier, waiting: 0, running: 0 }]),
    );
    for (const context of this.inFlight) {
      const entry = counts.get(serviceBand(context.serviceTier))!;
      if (context.startedAtMs === null) entry.waiting++;
      else entry.running++;
    }
    return [...counts.values()];
  }
}

/** The router's explanation as an object, or the text itself when it is not JSON. */
function parsedRoute(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
