import { type ExportResult, ExportResultCode } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  type ReadableSpan,
  type SpanExporter,
  TraceIdRatioBasedSampler,
} from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import type { Clock } from '../core/clock.js';
import { defaults } from '../core/defaults.js';
import { RequestTracer } from './request-tracer.js';
import type { TelemetryConfig } from './telemetry-config.js';

export interface RequestTracing {
  /** The request observer that builds the spans; the gateway's last (after metering). */
  readonly observer: RequestTracer;
  /** Exports what is queued (within the OTLP timeout) and stops. */
  shutdown(): Promise<void>;
}

/**
 * Tracing as `telemetry` configures it, or null when it is off (no `telemetry.otlp`): then nothing is
 * built, and the request path has no tracing observer at all.
 *
 * The provider is Gravity's own, never registered as the global one: spans are parented explicitly
 * (request-tracer.ts), so no context manager or async hooks run per request, and a library that
 * uses the global API in the same process is not traced into Gravity's collector by surprise.
 */
export function startRequestTracing(
  config: TelemetryConfig,
  clock: Clock,
  log: (message: string, details: Record<string, unknown>) => void,
): RequestTracing | null {
  const otlp = config.otlp;
  if (!otlp) return null;
  const exporter = new ReportingExporter(
    new OTLPTraceExporter({ url: otlp.endpoint, headers: otlp.headers, timeoutMillis: otlp.timeoutMs }),
    log,
  );
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: config.serviceName }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(config.sampleRatio) }),
    spanProcessors: [
      // Spans are queued and exported in batches off the request path; a full queue drops new spans
      // instead of waiting, so a collector that is down or slow never delays a response.
      new BatchSpanProcessor(exporter, {
        maxQueueSize: config.maxQueueSpans,
        maxExportBatchSize: Math.min(defaults.telemetry.maxExportBatchSpans, config.maxQueueSpans),
        scheduledDelayMillis: defaults.telemetry.exportIntervalMs,
        exportTimeoutMillis: otlp.timeoutMs,
      }),
    ],
  });
  return {
    observer: new RequestTracer(provider.getTracer('gravity'), clock),
    shutdown: () =>
      shutdownWithin(provider, Math.min(otlp.timeoutMs, defaults.telemetry.shutdownExportMs), log),
  };
}

/**
 * Exports the spans still queued, waiting at most `limitMs`: the SDK's own shutdown waits a whole export
 * timeout for a collector that does not answer, then rejects. Spans that have not left by then are lost
 * (and said so); Gravity's shutdown goes on either way.
 */
async function shutdownWithin(
  provider: BasicTracerProvider,
  limitMs: number,
  log: (message: string, details: Record<string, unknown>) => void,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timed-out'>((resolve) => {
    timer = setTimeout(resolve, limitMs, 'timed-out');
  });
  try {
    const outcome = await Promise.race([provider.shutdown().then(() => 'done' as const), timedOut]);
    if (outcome === 'timed-out')
      log('telemetry: the last spans were not exported at shutdown; they are dropped', { waitedMs: limitMs });
  } catch (error) {
    log('telemetry: the last spans were not exported at shutdown; they are dropped', {
      error: error instanceof Error ? error.message : String(error),
    });
  } finally {
    clearTimeout(timer);
  }
}

/** How often a failing collector is reported: once when it starts failing, then at most this often. */
const failureReportIntervalMs = 60_000;

/**
 * The OTLP exporter, with failed exports logged: the SDK reports them only to its diagnostic logger,
 * which is silent unless set globally. Logged when exports start failing, then at most once a minute.
 */
class ReportingExporter implements SpanExporter {
  private failing = false;
  private lastReportMs = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly inner: SpanExporter,
    private readonly log: (message: string, details: Record<string, unknown>) => void,
  ) {}

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    this.inner.export(spans, (result) => {
      if (result.code === ExportResultCode.SUCCESS) this.failing = false;
      else this.report(spans.length, result.error);
      resultCallback(result);
    });
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }

  private report(spans: number, error: Error | undefined): void {
    const nowMs = Date.now();
    if (this.failing && nowMs - this.lastReportMs < failureReportIntervalMs) return;
    this.failing = true;
    this.lastReportMs = nowMs;
    this.log('telemetry: exporting spans failed; they are dropped', {
      spans,
      error: error?.message ?? 'unknown',
    });
  }
}
