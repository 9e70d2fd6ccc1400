import type { DashboardSnapshotJson, RecentRequestJson, TierTargetJson } from '../dashboard-snapshot.js';
import { getJson } from './api.js';
import { Chart, type ChartSet, latencySeries } from './charts.js';
import { dataTable, element, emptyState } from './dom.js';
import {
  energyProvenance,
  formatJoules,
  formatMs,
  formatPercent,
  formatRate,
  formatUsd,
  tierColour,
  timeOfDay,
} from './format.js';

/** The live charts cover the last five minutes, in five-second buckets. */
const windowMs = 5 * 60_000;
const bucketMs = 5_000;
/** The headline rates are over the last minute: steadier than a bucket, fresher than the window. */
const headlineMs = 60_000;
/** The live charts' shortest span, and how far before the first point they start. */
const minimumShownMs = 60_000;
const leadMs = 15_000;
const recentRows = 30;

interface QueueSample {
  atMs: number;
  waiting: Record<string, number>;
}

function quantile(values: number[], fraction: number): number | null {
  if (values.length === 0) return null;
  values.sort((a, b) => a - b);
  const position = (values.length - 1) * fraction;
  const low = values[Math.floor(position)] as number;
  const high = values[Math.ceil(position)] as number;
  return low + (high - low) * (position - Math.floor(position));
}

/** Refused for load: shed by the scheduler (429) or past its queue bound (503). */
function wasShed(request: RecentRequestJson): boolean {
  return request.status === 429 || request.status === 503;
}

/** What `/v1/dashboard/snapshot` says, as charts and tables, updated at every poll. */
export class LiveView {
  private requests: RecentRequestJson[] = [];
  private lastSequence = 0;
  private readonly queueSamples: QueueSample[] = [];
  private exampleModel = 'MODEL';
  /** The recent-requests rows last drawn (their sequences), and the routes a reader opened there. */
  private shownRecentKey: string | null = null;
  private readonly openRoutes = new Set<string>();
  private readonly throughput: Chart;
  private readonly ttft: Chart;
  private readonly itl: Chart;
  private readonly queue: Chart;
  private readonly shed: Chart;

  constructor(
    private readonly root: HTMLElement,
    charts: ChartSet,
  ) {
    this.throughput = charts.add(new Chart('chart-throughput'));
    this.ttft = charts.add(new Chart('chart-ttft'));
    this.itl = charts.add(new Chart('chart-itl'));
    this.queue = charts.add(new Chart('chart-queue'));
    this.shed = charts.add(new Chart('chart-shed'));
    const grid = root.querySelector('.charts') as HTMLElement;
    grid.append(this.throughput.card, this.ttft.card, this.itl.card, this.queue.card, this.shed.card);
  }

  /** Names a served model in the empty state's example request. */
  async loadExampleModel(): Promise<void> {
    const models = await getJson<{ data: { id: string }[] }>('/v1/models');
    this.exampleModel = models.data[0]?.id ?? this.exampleModel;
  }

  async poll(): Promise<DashboardSnapshotJson> {
    const snapshot = await getJson<DashboardSnapshotJson>(
      `/v1/dashboard/snapshot?after=${this.lastSequence}`,
    );
    // A restarted server counts from 1 again: start over rather than wait for its count to catch up.
    if (snapshot.last_sequence < this.lastSequence) this.requests = [];
    this.lastSequence = snapshot.last_sequence;
    this.requests.push(...snapshot.requests);
    const since = snapshot.now_ms - windowMs;
    this.requests = this.requests.filter((request) => request.finished_at_ms >= since);
    this.queueSamples.push({
      atMs: snapshot.now_ms,
      waiting: Object.fromEntries(snapshot.queues.map((queue) => [queue.tier, queue.waiting])),
    });
    while (this.queueSamples.length > 0 && (this.queueSamples[0] as QueueSample).atMs < since)
      this.queueSamples.shift();
    this.render(snapshot);
    return snapshot;
  }

  private render(snapshot: DashboardSnapshotJson): void {
    // How many finished requests the charts are drawn from, for a reader of the DOM (the browser test).
    this.root.dataset.requests = String(this.requests.length);
    const empty = this.root.querySelector('.live-empty') as HTMLElement;
    // Drawn once, not at every poll: someone may be selecting the example to copy it.
    if (this.requests.length > 0) empty.replaceChildren();
    else if (empty.childElementCount === 0)
      empty.append(
        emptyState(
          'No traffic yet — try ',
          element(
            'code',
            {},
            `curl ${location.origin}/v1/chat/completions -H 'content-type: application/json' ` +
              `-H "authorization: Bearer $GRAVITY_KEY" ` +
              `-d '{"model":"${this.exampleModel}","messages":[{"role":"user","content":"Hello"}]}'`,
          ),
          ' (leave out the key when Gravity has none). The charts fill in within two seconds.',
        ),
      );
    this.renderHeadline(snapshot.now_ms);
    this.renderCharts(snapshot);
    this.renderReplicas(snapshot);
    this.renderRecent();
  }

  private renderHeadline(nowMs: number): void {
    const recent = this.requests.filter((request) => request.finished_at_ms >= nowMs - headlineMs);
    const seconds = headlineMs / 1000;
    let tokens = 0;
    let outputTokens = 0;
    let costUsd = 0;
    let energyJoules = 0;
    const sources = new Set<string>();
    for (const request of this.requests) {
      tokens += request.prompt_tokens + request.completion_tokens;
      costUsd += request.cost_usd ?? 0;
      energyJoules += request.energy_joules ?? 0;
      if (request.energy_source) sources.add(request.energy_source);
    }
    for (const request of recent) outputTokens += request.completion_tokens;
    const perMillion = (value: number) => (tokens > 0 ? (value / tokens) * 1_000_000 : null);
    const card = (id: string, label: string, value: string, note: string) =>
      element(
        'div',
        { className: 'figure', id },
        element('span', { className: 'label' }, label),
        element('span', { className: 'value' }, value),
        element('span', { className: 'note' }, note),
      );
    (this.root.querySelector('.headline') as HTMLElement).replaceChildren(
      card('live-request-rate', 'Requests', `${formatRate(recent.length / seconds)} /s`, 'last minute'),
      card('live-token-rate', 'Output tokens', `${formatRate(outputTokens / seconds)} /s`, 'last minute'),
      card('live-cost-per-million', 'Cost per 1M tokens', formatUsd(perMillion(costUsd)), 'last 5 minutes'),
      card(
        'live-energy-per-million',
        'Energy per 1M tokens',
        formatJoules(perMillion(energyJoules)),
        energyProvenance([...sources].sort()),
      ),
    );
  }

  /** Tiers with something to show in the window; `default` when there is nothing, so axes still show. */
  private shownTiers(snapshot: DashboardSnapshotJson): TierTargetJson[] {
    const seen = new Set(this.requests.map((request) => request.tier));
    for (const sample of this.queueSamples)
      for (const [tier, waiting] of Object.entries(sample.waiting)) if (waiting > 0) seen.add(tier);
    if (seen.size === 0) seen.add('default');
    return snapshot.tiers.filter((tier) => seen.has(tier.tier));
  }

  private renderCharts(snapshot: DashboardSnapshotJson): void {
    const end = Math.ceil(snapshot.now_ms / bucketMs) * bucketMs;
    // The charts start a little before the first thing they have to show (the page opened, or the
    // oldest request kept), at least a minute back, at most the whole window: a burst a minute ago is not
    // squeezed into the right edge of five empty minutes.
    const earliestMs = Math.min(
      this.requests[0]?.finished_at_ms ?? snapshot.now_ms,
      this.queueSamples[0]?.atMs ?? snapshot.now_ms,
    );
    const shownMs = Math.min(windowMs, Math.max(minimumShownMs, end - earliestMs + leadMs));
    const buckets = Math.ceil(shownMs / bucketMs);
    const x = Array.from({ length: buckets }, (_, index) => (end - (buckets - 1 - index) * bucketMs) / 1000);
    const bucketOf = (atMs: number) => buckets - 1 - Math.floor((end - atMs) / bucketMs);
    const tiers = this.shownTiers(snapshot);
    const xRange: [number, number] = [(end - buckets * bucketMs) / 1000, end / 1000];
    const perBucket = () => Array.from({ length: buckets }, () => 0);
    const requestRate = perBucket();
    const tokenRate = perBucket();
    const byTier = new Map(
      tiers.map((tier) => [
        tier.tier,
        {
          ttft: Array.from({ length: buckets }, (): number[] => []),
          itl50: Array.from({ length: buckets }, (): number[] => []),
          itl95: Array.from({ length: buckets }, (): number[] => []),
          shed: perBucket(),
        },
      ]),
    );
    for (const request of this.requests) {
      const bucket = bucketOf(request.finished_at_ms);
      if (bucket < 0 || bucket >= buckets) continue;
      requestRate[bucket] = (requestRate[bucket] as number) + 1000 / bucketMs;
      tokenRate[bucket] = (tokenRate[bucket] as number) + (request.completion_tokens * 1000) / bucketMs;
      const tier = byTier.get(request.tier);
      if (!tier) continue;
      if (wasShed(request)) tier.shed[bucket] = (tier.shed[bucket] as number) + 1000 / bucketMs;
      if (request.ttft_ms !== null) tier.ttft[bucket]?.push(request.ttft_ms);
      if (request.itl_p50_ms !== null) tier.itl50[bucket]?.push(request.itl_p50_ms);
      if (request.itl_p95_ms !== null) tier.itl95[bucket]?.push(request.itl_p95_ms);
    }
    this.throughput.update({
      title: 'Throughput',
      yAxisLabel: 'requests / s',
      rightAxisLabel: 'output tokens / s',
      x,
      xRange,
      series: [
        { label: 'requests/s', colour: '#333333', values: requestRate },
        { label: 'output tokens/s', colour: '#8c564b', values: tokenRate, right: true },
      ],
    });
    const latency = (pick: 'ttft' | 'itl', target: (tier: TierTargetJson) => number) =>
      latencySeries(
        tiers.map((tier) => {
          const figures = byTier.get(tier.tier)!;
          // Inter-token latency: the median of the requests' own medians, and the p95 of their p95s (each
          // request's gaps are summarised where it ends; the page never sees single gaps).
          const p50Of = pick === 'ttft' ? figures.ttft : figures.itl50;
          const p95Of = pick === 'ttft' ? figures.ttft : figures.itl95;
          return {
            tier: tier.tier,
            colour: tierColour(tier.tier),
            p50: p50Of.map((values) => quantile(values, 0.5)),
            p95: p95Of.map((values) => quantile(values, 0.95)),
            targetMs: target(tier),
          };
        }),
      );
    this.ttft.update({
      title: 'Time to first token, per tier, against its target',
      yAxisLabel: 'ms (log scale)',
      logScale: true,
      x,
      xRange,
      series: latency('ttft', (tier) => tier.ttft_target_ms),
    });
    this.itl.update({
      title: 'Inter-token latency, per tier, against its target',
      yAxisLabel: 'ms (log scale)',
      logScale: true,
      x,
      xRange,
      series: latency('itl', (tier) => tier.itl_target_ms),
    });
    this.queue.update({
      title: 'Queue depth per tier (waiting for an engine)',
      yAxisLabel: 'requests waiting',
      x: this.queueSamples.map((sample) => sample.atMs / 1000),
      xRange,
      series: tiers.map((tier) => ({
        label: tier.tier,
        colour: tierColour(tier.tier),
        values: this.queueSamples.map((sample) => sample.waiting[tier.tier] ?? 0),
      })),
    });
    this.shed.update({
      title: 'Shed rate per tier (refused for load: 429, 503)',
      yAxisLabel: 'requests shed / s',
      x,
      xRange,
      series: tiers.map((tier) => ({
        label: tier.tier,
        colour: tierColour(tier.tier),
        values: byTier.get(tier.tier)!.shed,
      })),
    });
  }

  private renderReplicas(snapshot: DashboardSnapshotJson): void {
    const target = this.root.querySelector('.replicas') as HTMLElement;
    if (snapshot.replicas.length === 0) {
      target.replaceChildren(emptyState('No replicas — add engines under `engines:` in the config file.'));
      return;
    }
    target.replaceChildren(
      dataTable(
        ['Replica', 'Health', 'Load (busy / slots)', 'Waiting', 'KV cache used', 'Prefix-cache hits'],
        snapshot.replicas.map((replica) =>
          element(
            'tr',
            { 'data-replica': replica.id },
            element('th', { scope: 'row' }, replica.id),
            element(
              'td',
              { className: `health health-${replica.health}`, title: replica.last_error ?? undefined },
              replica.health === 'closed' ? 'healthy' : replica.health === 'open' ? 'ejected' : 'probation',
            ),
            element('td', {}, `${replica.slots_busy} / ${replica.slots_total}`),
            element('td', {}, replica.waiting),
            element('td', {}, formatPercent(replica.kv_used_fraction)),
            this.prefixHitCell(replica.id, replica.prefix_hit_rate),
          ),
        ),
      ),
    );
  }

  /**
   * The engine's own prefix-cache figure where it keeps one; otherwise the share of prompt tokens its
   * recent requests found cached (what the engine reported in their usage), marked as such.
   */
  private prefixHitCell(replica: string, engineRate: number | null): HTMLElement {
    if (engineRate !== null) return element('td', {}, formatPercent(engineRate));
    let prompt = 0;
    let cached = 0;
    for (const request of this.requests)
      if (request.replica === replica) {
        prompt += request.prompt_tokens;
        cached += request.cached_prompt_tokens;
      }
    if (prompt === 0) return element('td', {}, '—');
    return element(
      'td',
      { title: "from the cached prompt tokens of this replica's requests in the last five minutes" },
      `${formatPercent(cached / prompt)} (requests)`,
    );
  }

  private renderRecent(): void {
    const target = this.root.querySelector('.recent') as HTMLElement;
    const newest = this.requests.slice(-recentRows).reverse();
    // Rebuilt only when the rows change, and with the explanations a reader opened still open and the
    // keyboard focus where it was: a poll must not snatch what someone is reading.
    const shownKey = newest.map((request) => request.sequence).join(',');
    if (shownKey === this.shownRecentKey) return;
    this.shownRecentKey = shownKey;
    const shownIds = new Set(newest.map((request) => request.request_id));
    for (const requestId of this.openRoutes) if (!shownIds.has(requestId)) this.openRoutes.delete(requestId);
    const focusedRequest = (document.activeElement as HTMLElement | null)?.closest<HTMLElement>('.recent tr')
      ?.dataset.requestId;
    if (newest.length === 0) {
      target.replaceChildren(emptyState('No requests in the last five minutes.'));
      return;
    }
    target.replaceChildren(
      dataTable(
        ['Finished (UTC)', 'Tier', 'Tenant', 'Model', 'Status', 'TTFT', 'Tokens in / out', 'Price', 'Route'],
        newest.map((request) => this.recentRow(request)),
      ),
    );
    if (focusedRequest)
      target
        .querySelector<HTMLElement>(`tr[data-request-id="${CSS.escape(focusedRequest)}"] summary`)
        ?.focus();
  }

  private routeDetails(requestId: string, summary: string, route: unknown): HTMLElement {
    const details = element(
      'details',
      { open: this.openRoutes.has(requestId) },
      element('summary', {}, summary),
      element('pre', {}, JSON.stringify(route, null, 2)),
    );
    details.addEventListener('toggle', () => {
      if (details.open) this.openRoutes.add(requestId);
      else this.openRoutes.delete(requestId);
    });
    return details;
  }

  private recentRow(request: RecentRequestJson): HTMLElement {
    const route = request.route as { replica?: string; profile?: string; attempt?: number } | null;
    const summary = route
      ? `${route.replica ?? '?'}${route.profile ? ` · ${route.profile}` : ''}${route.attempt && route.attempt > 1 ? ` · attempt ${route.attempt}` : ''}`
      : 'not routed';
    return element(
      'tr',
      { 'data-request-id': request.request_id },
      element('td', {}, timeOfDay(request.finished_at_ms)),
      element('td', {}, element('span', { className: `tier tier-${request.tier}` }, request.tier)),
      element('td', {}, request.tenant),
      element('td', {}, request.model),
      element('td', {}, request.error_code ? `${request.status} ${request.error_code}` : request.status),
      element('td', {}, formatMs(request.ttft_ms)),
      element('td', {}, `${request.prompt_tokens} / ${request.completion_tokens}`),
      element('td', {}, formatUsd(request.price_usd)),
      element(
        'td',
        { className: 'route' },
        route ? this.routeDetails(request.request_id, summary, route) : summary,
      ),
    );
  }
}
