import uPlot from 'uplot';
import { element } from './dom.js';

export interface ChartSeries {
  label: string;
  colour: string;
  values: (number | null)[];
  /** A target (SLO) line: dashed and thin, left out of the point count. */
  target?: boolean;
  /** A secondary figure of the same colour (p50 beside p95): thinner. */
  thin?: boolean;
  /** Plot against the right-hand axis (`rightAxisLabel`). */
  right?: boolean;
}

export interface ChartSpec {
  title: string;
  /** The y axis's label, with its unit: "TTFT (ms)". */
  yAxisLabel: string;
  rightAxisLabel?: string;
  /** Epoch seconds (time axis) or run numbers (`xAxisLabel` then names them). */
  x: number[];
  xAxisLabel?: string;
  /** The x axis's extent (the range asked for), rather than the data's: one point still sits in context. */
  xRange?: [number, number];
  /** The x values are counts (run numbers): ticks on whole numbers only. */
  xCounted?: boolean;
  series: ChartSeries[];
  /**
   * A logarithmic y axis: latencies a few milliseconds long and a target of seconds are then both
   * readable on one chart, where a linear axis would flatten the measurements to the floor.
   */
  logScale?: boolean;
}

const chartHeightPx = 220;

/**
 * One uPlot chart in a card that keeps its place on the page: data changes update it in place, a
 * change of series (a tier appears) rebuilds it. The card carries `data-points`, the number of plotted
 * values that are not targets, and `data-highest`, the largest of them, so a test (or a reader of the
 * DOM) can tell an empty chart from a drawn one.
 */
export class Chart {
  readonly card: HTMLElement;
  private readonly plotArea: HTMLElement;
  private plot: uPlot | null = null;
  private shape = '';

  constructor(id: string) {
    this.plotArea = element('div', { className: 'plot' });
    this.card = element('figure', { className: 'chart', id, 'data-points': 0 }, this.plotArea);
  }

  update(spec: ChartSpec): void {
    const shape = JSON.stringify([
      spec.title,
      spec.logScale,
      spec.yAxisLabel,
      spec.xAxisLabel,
      spec.xRange,
      spec.series.map((series) => [series.label, series.colour]),
    ]);
    const data = [spec.x, ...spec.series.map((series) => series.values)] as uPlot.AlignedData;
    let points = 0;
    let highest = 0;
    for (const series of spec.series)
      if (!series.target)
        for (const value of series.values)
          if (value !== null) {
            points++;
            highest = Math.max(highest, value);
          }
    this.card.dataset.points = String(points);
    this.card.dataset.highest = String(highest);
    // The axes are drawn on the canvas: say what they are to readers who cannot see it.
    this.card.setAttribute(
      'aria-label',
      `${spec.title}: ${spec.yAxisLabel}${spec.rightAxisLabel ? ` and ${spec.rightAxisLabel}` : ''} by ${spec.xAxisLabel ?? 'time (UTC)'}`,
    );
    if (this.plot && shape === this.shape) {
      this.plot.setData(data);
      return;
    }
    this.plot?.destroy();
    this.shape = shape;
    this.plot = new uPlot(this.options(spec), data, this.plotArea);
  }

  /** Follows the card's width (the page reflows from one column on a phone to several on a monitor). */
  resize(): void {
    this.plot?.setSize({ width: this.width(), height: chartHeightPx });
  }

  private width(): number {
    return Math.max(240, Math.floor(this.card.clientWidth - 16));
  }

  private options(spec: ChartSpec): uPlot.Options {
    const timeAxis = spec.xAxisLabel === undefined;
    const axisStyle = { stroke: '#444', grid: { stroke: '#e6e6e6', width: 1 }, ticks: { stroke: '#ccc' } };
    const axes: uPlot.Axis[] = [
      timeAxis
        ? { ...axisStyle, label: 'time (UTC)', labelSize: 24 }
        : spec.xCounted
          ? {
              ...axisStyle,
              label: spec.xAxisLabel,
              labelSize: 24,
              incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
              values: (_plot, splits) =>
                splits.map((value) => (Number.isInteger(value) ? String(value) : '')),
            }
          : { ...axisStyle, label: spec.xAxisLabel, labelSize: 24 },
      {
        ...axisStyle,
        label: spec.yAxisLabel,
        labelSize: 24,
        size: 56,
        ...(spec.logScale && {
          // A log axis splits at every 1…9 × 10ⁿ; ticks, grid and labels at 1, 2 and 5 only keep it legible.
          filter: readableLogSplits,
          grid: { ...axisStyle.grid, filter: readableLogSplits },
          ticks: { ...axisStyle.ticks, filter: readableLogSplits },
        }),
      },
    ];
    if (spec.rightAxisLabel)
      axes.push({
        ...axisStyle,
        scale: 'right',
        side: 1,
        grid: { show: false },
        label: spec.rightAxisLabel,
        labelSize: 24,
        size: 56,
      });
    return {
      title: spec.title,
      // The page says UTC everywhere (the API's times are UTC); uPlot would draw the browser's zone.
      tzDate: (seconds) => uPlot.tzDate(new Date(seconds * 1000), 'Etc/UTC'),
      width: this.width(),
      height: chartHeightPx,
      scales: {
        x: spec.xRange ? { time: timeAxis, range: spec.xRange } : { time: timeAxis },
        // Every figure here is a rate, a count or a duration: zero belongs on the axis.
        y: spec.logScale
          ? { distr: 3, log: 10 }
          : { range: (_plot, _min, max) => [0, max > 0 ? max * 1.1 : 1] },
        right: { range: (_plot, _min, max) => [0, max > 0 ? max * 1.1 : 1] },
      },
      axes,
      legend: { live: true },
      cursor: { drag: { x: false, y: false } },
      series: [
        timeAxis ? { label: 'time' } : { label: spec.xAxisLabel },
        ...spec.series.map(
          (series): uPlot.Series => ({
            label: series.label,
            stroke: series.colour,
            width: series.target ? 1 : series.thin ? 1.25 : 2,
            dash: series.target ? [6, 4] : undefined,
            scale: series.right ? 'right' : 'y',
            spanGaps: true,
            points: { show: !series.target, size: 4 },
          }),
        ),
      ],
    };
  }
}

function readableLogSplits(_plot: uPlot, splits: number[]): (number | null)[] {
  return splits.map((value) => {
    if (!(value > 0)) return null;
    const mantissa = Math.round(value / 10 ** Math.floor(Math.log10(value) + 1e-9));
    return mantissa === 1 || mantissa === 2 || mantissa === 5 ? value : null;
  });
}

/** The charts on the page, resized together when the window changes width. */
export class ChartSet {
  private readonly charts: Chart[] = [];

  constructor() {
    let pending = 0;
    window.addEventListener('resize', () => {
      cancelAnimationFrame(pending);
      pending = requestAnimationFrame(() => {
        for (const chart of this.charts) chart.resize();
      });
    });
  }

  add(chart: Chart): Chart {
    this.charts.push(chart);
    return chart;
  }
}

/**
 * A latency chart's series for each tier: p95 (thick), p50 (thin) and the tier's target (dashed), all in
 * the tier's colour, for a chart with `logScale`. A target more than ten thousand times the measured
 * figures (batch's day-long TTFT bound) would still squeeze them into a corner; it is then left out and
 * its value named in the legend instead.
 */
export function latencySeries(
  tiers: readonly {
    tier: string;
    colour: string;
    p50: (number | null)[];
    p95: (number | null)[];
    targetMs: number;
  }[],
): ChartSeries[] {
  let highest = 0;
  for (const tier of tiers)
    for (const value of tier.p95) if (value !== null) highest = Math.max(highest, value);
  const series: ChartSeries[] = [];
  for (const tier of tiers) {
    series.push({ label: `${tier.tier} p95`, colour: tier.colour, values: tier.p95 });
    series.push({ label: `${tier.tier} p50`, colour: tier.colour, values: tier.p50, thin: true });
    if (tier.targetMs > 0 && (highest === 0 || tier.targetMs <= highest * 10_000))
      series.push({
        label: `${tier.tier} target`,
        colour: tier.colour,
        values: tier.p95.map(() => tier.targetMs),
        target: true,
      });
    else
      series.push({
        label: `${tier.tier} target ${tier.targetMs} ms (off scale)`,
        colour: tier.colour,
        values: tier.p95.map(() => null),
        target: true,
      });
  }
  return series;
}
