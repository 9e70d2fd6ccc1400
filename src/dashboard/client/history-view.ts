import type { TierTargetJson } from '../dashboard-snapshot.js';
import { getJson, type UsageGroupJson, type UsageJson } from './api.js';
import { Chart, type ChartSet, latencySeries } from './charts.js';
import { dataTable, element, emptyState } from './dom.js';
import { energyProvenance, formatCount, formatJoules, formatUsd, tierColour } from './format.js';

/**
 * History from the ledger through `GET /v1/usage`, for the range the operator picks: totals, revenue,
 * cost and margin by tenant and model, and TTFT per tier per hour. The figures are the API's, shown as
 * they come: each cell keeps the raw value in `data-value`, and the section the range it asked for in
 * `data-start-time`/`data-end-time` (Unix seconds, as `/v1/usage` takes them).
 */
export class HistoryView {
  private readonly hourly: Chart;
  private readonly volume: Chart;
  private targets: TierTargetJson[] = [];

  constructor(
    private readonly root: HTMLElement,
    charts: ChartSet,
  ) {
    this.hourly = charts.add(new Chart('chart-history-ttft'));
    this.volume = charts.add(new Chart('chart-history-requests'));
    (root.querySelector('.charts') as HTMLElement).append(this.volume.card, this.hourly.card);
  }

  setTargets(targets: TierTargetJson[]): void {
    this.targets = targets;
  }

  /**
   * The range asked for, in Unix seconds, end exclusive (as `/v1/usage` takes them): a preset ending now,
   * or the custom one typed in (UTC); null while the custom one is incomplete or backwards.
   */
  private range(): [number, number] | null {
    const choice = (this.root.querySelector('#range') as HTMLSelectElement).value;
    const custom = this.root.querySelector('.custom-range') as HTMLElement;
    custom.hidden = choice !== 'custom';
    if (choice === 'custom') {
      const seconds = (selector: string) => {
        const value = (this.root.querySelector(selector) as HTMLInputElement).value;
        return value === '' ? Number.NaN : Math.floor(Date.parse(`${value}Z`) / 1000);
      };
      const start = seconds('#range-from');
      const end = seconds('#range-to');
      return Number.isFinite(start) && Number.isFinite(end) && start < end ? [start, end] : null;
    }
    // The second after now, so a request received this second counts.
    const endTime = Math.floor(Date.now() / 1000) + 1;
    return [endTime - Number(choice), endTime];
  }

  async refresh(): Promise<void> {
    const chosen = this.range();
    if (!chosen) return;
    const [startTime, endTime] = chosen;
    const range = `start_time=${startTime}&end_time=${endTime}`;
    const [totals, byTenantModel, byHourTier] = await Promise.all([
      getJson<UsageJson>(`/v1/usage?${range}`),
      getJson<UsageJson>(`/v1/usage?${range}&group_by=tenant,model`),
      getJson<UsageJson>(`/v1/usage?${range}&group_by=hour,tier`),
    ]);
    this.root.dataset.startTime = String(startTime);
    this.root.dataset.endTime = String(endTime);
    this.renderTotals(totals.data[0]);
    this.renderTenantModel(byTenantModel.data);
    this.renderHourly(byHourTier.data, [startTime, endTime]);
  }

  private renderTotals(total: UsageGroupJson | undefined): void {
    const target = this.root.querySelector('.totals') as HTMLElement;
    if (!total || total.requests === 0) {
      target.replaceChildren(
        emptyState(
          'No requests in this range. The ledger records every completion request: send one (see the live ' +
            'view), or pick a longer range.',
        ),
      );
      return;
    }
    const tokens = total.prompt_tokens + total.completion_tokens;
    const perMillion = (value: number) => (tokens > 0 ? (value / tokens) * 1_000_000 : null);
    const figure = (name: string, label: string, value: number | null, text: string) =>
      element(
        'div',
        { className: 'figure', 'data-figure': name, 'data-value': value === null ? '' : String(value) },
        element('span', { className: 'label' }, label),
        element('span', { className: 'value' }, text),
      );
    target.replaceChildren(
      figure('requests', 'Requests', total.requests, formatCount(total.requests)),
      figure('failed_requests', 'Failed', total.failed_requests, formatCount(total.failed_requests)),
      figure('prompt_tokens', 'Prompt tokens', total.prompt_tokens, formatCount(total.prompt_tokens)),
      figure(
        'completion_tokens',
        'Completion tokens',
        total.completion_tokens,
        formatCount(total.completion_tokens),
      ),
      figure('price_usd', 'Revenue', total.price_usd, formatUsd(total.price_usd)),
      figure('cost_usd', 'Cost', total.cost_usd, formatUsd(total.cost_usd)),
      figure('margin_usd', 'Margin', total.margin_usd, formatUsd(total.margin_usd)),
      figure(
        'cost_per_million_tokens',
        '$ per 1M tokens (cost)',
        perMillion(total.cost_usd),
        formatUsd(perMillion(total.cost_usd)),
      ),
      figure('energy_joules', 'Energy', total.energy_joules, formatJoules(total.energy_joules)),
      figure(
        'joules_per_million_tokens',
        'Energy per 1M tokens',
        perMillion(total.energy_joules),
        formatJoules(perMillion(total.energy_joules)),
      ),
      element(
        'div',
        {
          className: 'figure',
          'data-figure': 'energy_sources',
          'data-value': total.energy_sources.join(','),
        },
        element('span', { className: 'label' }, 'Energy source'),
        element('span', { className: 'value small' }, energyProvenance(total.energy_sources)),
      ),
    );
  }

  private renderTenantModel(groups: UsageGroupJson[]): void {
    const target = this.root.querySelector('.by-tenant-model') as HTMLElement;
    if (groups.length === 0) {
      target.replaceChildren(emptyState('No revenue or cost in this range yet.'));
      return;
    }
    const sorted = [...groups].sort((a, b) => b.price_usd - a.price_usd);
    const money = (name: string, value: number) =>
      element(
        'td',
        { 'data-figure': name, 'data-value': String(value), className: 'number' },
        formatUsd(value),
      );
    target.replaceChildren(
      dataTable(
        ['Tenant', 'Model', 'Requests', 'Revenue', 'Cost', 'Margin'],
        sorted.map((group) =>
          element(
            'tr',
            { 'data-tenant': group.tenant ?? '', 'data-model': group.model ?? '' },
            element('th', { scope: 'row' }, group.tenant ?? ''),
            element('td', {}, group.model ?? ''),
            element(
              'td',
              { 'data-figure': 'requests', 'data-value': String(group.requests), className: 'number' },
              formatCount(group.requests),
            ),
            money('price_usd', group.price_usd),
            money('cost_usd', group.cost_usd),
            element(
              'td',
              {
                'data-figure': 'margin_usd',
                'data-value': String(group.margin_usd),
                className: group.margin_usd < 0 ? 'number negative' : 'number',
              },
              formatUsd(group.margin_usd),
            ),
          ),
        ),
      ),
    );
  }

  private renderHourly(groups: UsageGroupJson[], range: [number, number]): void {
    const hours = [...new Set(groups.map((group) => group.hour ?? ''))].sort();
    const x = hours.map((hour) => Date.parse(hour) / 1000);
    // Hours start before the range does: widen it to the first hour so its point is on the chart.
    const xRange: [number, number] = [Math.min(range[0], x[0] ?? range[0]), range[1]];
    const tiers = [...new Set(groups.map((group) => group.tier ?? 'default'))];
    const cell = (hour: string, tier: string) =>
      groups.find((group) => group.hour === hour && group.tier === tier);
    this.volume.update({
      title: 'Requests per hour, per tier (ledger)',
      yAxisLabel: 'requests / hour',
      x,
      xRange,
      series: tiers.map((tier) => ({
        label: tier,
        colour: tierColour(tier),
        values: hours.map((hour) => cell(hour, tier)?.requests ?? 0),
      })),
    });
    this.hourly.update({
      title: 'Time to first token per hour, per tier (ledger)',
      yAxisLabel: 'ms (log scale)',
      logScale: true,
      x,
      xRange,
      series: latencySeries(
        tiers.map((tier) => ({
          tier,
          colour: tierColour(tier),
          p50: hours.map((hour) => cell(hour, tier)?.ttft_p50_ms ?? null),
          p95: hours.map((hour) => cell(hour, tier)?.ttft_p95_ms ?? null),
          targetMs: this.targets.find((target) => target.tier === tier)?.ttft_target_ms ?? 0,
        })),
      ),
    });
  }
}
