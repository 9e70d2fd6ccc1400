/**
 * One published measurement, as stored in calibration.json and validation.json (README.md in this folder).
 * Free-text fields say "not stated" rather than guessing: a setting a source does not publish stays unknown.
 */
export interface PublishedMeasurement {
  /** Unique across both files; kebab-case; ends with the metric (e.g. `-throughput`, `-ttft`). */
  id: string;
  /** Shared by every point measured in the same benchmark run; the split is decided on it (split.ts). */
  run: string;
  source: {
    /** The independent source group; leave-one-source-out cross-validation holds out one name at a time. */
    name: string;
    url: string;
    /** Table, figure or file and field the value was read from. */
    locator: string;
    published: string | null;
  };
  setup: {
    engine: string;
    engineVersion: string;
    /** A hardware profile name (`h100-sxm`, `a100-80gb`, `l40s`, `l4`) or a sentence when the source does not say. */
    hardware: string;
    gpus: number;
    tensorParallel: number;
    model: string;
    precision: string;
    workload: Record<string, unknown> & {
      /** Exact per-request lengths, relative to the validation folder (`traces/<run>.json`), where published. */
      trace?: string;
    };
    load: Record<string, unknown>;
    batching: Record<string, unknown>;
  } & Record<string, unknown>;
  metric: {
    name: string;
    /** Median or mean, what the window is, how empty answers count, whether TTFT includes queueing. */
    definition: string;
  };
  value: number;
  /** What makes the point hard to reproduce. */
  notes: string;
}

/** A trace file: the exact input and output length of every request of one run, in request order. */
export interface PublishedTrace {
  inputLens: number[];
  outputLens: number[];
}
