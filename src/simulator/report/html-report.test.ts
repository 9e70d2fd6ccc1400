import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import type { SimulationResult } from '../simulation-result.js';
import { paretoFrontier, renderHtmlReport } from './html-report.js';
import { simulationResultFixture } from './simulation-result-fixture.js';

const meta = {
  title: 'Rate sweep',
  command: 'gravity sim scenarios/chat.yaml --html out.html',
  generatedAt: '2026-11-27T10:00:00.000Z',
};

const sweep = [2, 4, 8].flatMap((ratePerSecond) =>
  (['round-robin', 'least-loaded'] as const).map((routing) =>
    simulationResultFixture({ point: { ratePerSecond, routing }, tiers: ['priority', 'default'] }),
  ),
);

function scriptBlocks(html: string): { attributes: string; body: string }[] {
  return [...html.matchAll(/<script([^>]*)>([\s\S]*?)<\/script>/g)].map((match) => ({
    attributes: match[1]!,
    body: match[2]!,
  }));
}

/** The page without script bodies, so a failed `toContain` prints kilobytes rather than the bundle. */
function markup(html: string): string {
  return html.replace(/<script([^>]*)>[\s\S]*?<\/script>/g, '<script$1>…</script>');
}

function embeddedJson(html: string, id: string): unknown {
  const block = scriptBlocks(html).find((script) => script.attributes.includes(`id="${id}"`));
  if (!block) throw new Error(`no script #${id}`);
  return JSON.parse(block.body);
}

interface FakeCanvas {
  id: string;
  width: number;
  height: number;
  getContext(): unknown;
}

/**
 * Runs the page's scripts as a browser would, against a stub DOM whose canvases draw nothing: Chart.js
 * still parses every configuration, builds its scales and lays the chart out, so a bad config throws.
 */
function runPageScripts(html: string) {
  const jsonBlocks = new Map<string, string>();
  for (const script of scriptBlocks(html)) {
    const id = /id="([^"]+)"/.exec(script.attributes)?.[1];
    if (id) jsonBlocks.set(id, script.body);
  }
  const canvases: FakeCanvas[] = [];
  const warning = { hidden: true };
  const fakeContext = (canvas: FakeCanvas) =>
    new Proxy(
      {
        canvas,
        measureText: (text: string) => ({ width: String(text).length * 6 }),
        getLineDash: () => [],
        createLinearGradient: () => ({ addColorStop() {} }),
      } as Record<string | symbol, unknown>,
      {
        get: (target, key) => (key in target ? target[key] : () => undefined),
        set: (target, key, value) => {
          target[key] = value;
          return true;
        },
      },
    );
  const document = {
    getElementById(id: string) {
      const json = jsonBlocks.get(id);
      if (json !== undefined) return { textContent: json };
      if (id === 'chart-warning') return warning;
      let context: unknown;
      const canvas: FakeCanvas = {
        id,
        width: 800,
        height: 400,
        getContext: () => {
          context ??= fakeContext(canvas);
          return context;
        },
      };
      canvases.push(canvas);
      return canvas;
    },
  };
  // No `window`, so Chart.js picks its basic (non-DOM) platform.
  const context = vm.createContext({ document });
  for (const script of scriptBlocks(html).filter((block) => !block.attributes.includes('type=')))
    vm.runInContext(script.body, context);
  const Chart = context.Chart as {
    getChart(canvas: unknown): {
      data: { datasets: { label: string }[] };
      scales: Record<string, { type: string }>;
    };
  };
  return { canvases, warning, chart: (canvas: FakeCanvas) => Chart.getChart(canvas) };
}

describe('renderHtmlReport', () => {
  it('is self-contained: no external scripts, stylesheets or fonts', () => {
    const html = renderHtmlReport(sweep, meta);
    // Matches are compared, not the page: a failure should not print 250 kB of HTML.
    expect(html.match(/<script[^>]*\ssrc=/gi)).toBeNull();
    expect(html.match(/<link\b/gi)).toBeNull();
    expect(html.match(/\b(src|href)\s*=\s*["']?(https?:)?\/\//gi)).toBeNull();
    const styles = html.match(/<style>([\s\S]*?)<\/style>/)![1]!;
    expect(styles.match(/@import|@font-face|url\(/gi)).toBeNull();
  });

  it('inlines the Chart.js bundle', () => {
    const html = renderHtmlReport(sweep, meta);
    const require = createRequire(import.meta.url);
    const bundle = readFileSync(
      path.join(path.dirname(require.resolve('chart.js')), 'chart.umd.min.js'),
      'utf8',
    );
    expect(html.includes('Chart.js v4.6.1')).toBe(true);
    expect(html.includes(bundle.slice(1000, 3000))).toBe(true);
    expect(html.includes(bundle.slice(-2000))).toBe(true);
  });

  it('embeds every run as JSON', () => {
    const html = renderHtmlReport(sweep, meta);
    expect(embeddedJson(html, 'simulation-results')).toEqual(JSON.parse(JSON.stringify(sweep)));
  });

  it('keeps the JSON intact when a scenario name contains </script>', () => {
    const hostile = simulationResultFixture({ scenario: 'evil</script><script>alert(1)</script><!--' });
    const html = renderHtmlReport([hostile, simulationResultFixture({ scenario: 'plain' })], {
      ...meta,
      title: 'title </script> & <b>',
    });
    const results = embeddedJson(html, 'simulation-results') as SimulationResult[];
    expect(results[0]!.scenario).toBe('evil</script><script>alert(1)</script><!--');
    // Only the page's own four script elements exist.
    expect(html.match(/<script/gi)).toHaveLength(4);
    expect(html.match(/<\/script>/gi)).toHaveLength(4);
    expect(markup(html)).toContain('<title>title &lt;/script&gt; &amp; &lt;b&gt;</title>');
    expect(runPageScripts(html).canvases).toHaveLength(6);
  });

  it('shows the command, the time and the provenance of energy and cost', () => {
    const html = renderHtmlReport(sweep, meta);
    expect(markup(html)).toContain('gravity sim scenarios/chat.yaml --html out.html');
    expect(markup(html)).toContain('2026-11-27T10:00:00.000Z');
    expect(markup(html)).toContain('estimated:performance-model');
    expect(markup(html)).toContain('src/performance-model/hardware-profiles.ts');
  });

  it('lists every run and tier in the results table', () => {
    const html = renderHtmlReport(sweep, meta);
    const table = html.slice(html.indexOf('<table>'), html.indexOf('</table>'));
    expect(table.match(/<tr class="overall">/g)).toHaveLength(sweep.length);
    expect(table.match(/<td>priority<\/td>/g)).toHaveLength(sweep.length);
    expect(table.match(/<td>default<\/td>/g)).toHaveLength(sweep.length);
    expect(table).toContain('<th>rate req/s</th>');
    expect(table).toContain('<th>routing</th>');
  });

  it('builds every chart in Chart.js: latency against load, Pareto, cost, energy and SLO', () => {
    const page = runPageScripts(renderHtmlReport(sweep, meta));
    expect(page.warning.hidden).toBe(true);
    expect(page.canvases.map((canvas) => canvas.id)).toEqual([
      'ttft',
      'tpot',
      'pareto',
      'cost',
      'energy',
      'slo',
    ]);
    const [ttft, tpot, pareto, cost, energy, slo] = page.canvases.map((canvas) => page.chart(canvas)!);
    // Two routing policies × two tiers, p50 and p90.
    expect(ttft!.data.datasets).toHaveLength(8);
    expect(ttft!.data.datasets.map((dataset) => dataset.label)).toContain('least-loaded · priority · p90');
    expect(tpot!.data.datasets).toHaveLength(4);
    expect(pareto!.data.datasets.map((dataset) => dataset.label)).toEqual([
      'Pareto frontier',
      'round-robin',
      'least-loaded',
    ]);
    expect(cost!.data.datasets).toHaveLength(1);
    expect(energy!.data.datasets).toHaveLength(1);
    expect(Object.keys(slo!.scales)).toContain('goodput');
  });

  it('plots latency against offered load when the sweep varies it', () => {
    const html = renderHtmlReport(sweep, meta);
    const configs = embeddedJson(html, 'chart-configs') as {
      id: string;
      config: {
        options: { scales: { x: { title: { text: string } } } };
        data: { datasets: { data: { x: number }[] }[] };
      };
    }[];
    const ttft = configs.find((chart) => chart.id === 'ttft')!;
    expect(ttft.config.options.scales.x.title.text).toBe('offered load (requests/s, open loop)');
    expect(ttft.config.data.datasets[0]!.data.map((point) => point.x)).toEqual([2, 4, 8]);
  });

  it('renders a page for a single run and for no runs', () => {
    expect(runPageScripts(renderHtmlReport([simulationResultFixture()], meta)).canvases).toHaveLength(6);
    expect(markup(renderHtmlReport([], meta))).toContain('Results (0 runs)');
  });
});

describe('paretoFrontier', () => {
  it('keeps the points no other point beats on both axes, in ascending x', () => {
    const points = [
      { x: 10, y: 100 },
      { x: 20, y: 90 },
      { x: 15, y: 50 },
      { x: 30, y: 40 },
      { x: 25, y: 30 },
      { x: 5, y: 80 },
    ];
    expect(paretoFrontier(points)).toEqual([
      { x: 10, y: 100 },
      { x: 20, y: 90 },
      { x: 30, y: 40 },
    ]);
  });
});
