import { z } from 'zod';
import { defaults } from '../core/defaults.js';

/**
 * The `telemetry` section (docs/configuration.md): OpenTelemetry traces of each request, exported over
 * OTLP/HTTP (protobuf). Absent or without `otlp`: off, and the request path pays nothing for it.
 */
export const telemetryConfigSchema = z
  .strictObject({
    otlp: z
      .strictObject({
        /** The collector's traces URL, e.g. `http://127.0.0.1:4318/v1/traces`. */
        endpoint: z.url({ protocol: /^https?$/ }),
        /** Sent with every export (a collector's API key). */
        headers: z.record(z.string().min(1), z.string()).default({}),
        /** One export's time limit; a slower collector loses that batch, never a request's time. */
        timeoutMs: z.number().int().min(1).default(defaults.telemetry.otlpTimeoutMs),
      })
      .optional(),
    /** `service.name` of the spans' resource. */
    serviceName: z.string().min(1).default(defaults.telemetry.serviceName),
    /**
     * The share of traces Gravity starts that it records (0–1). A request whose `traceparent` says
     * sampled or not is recorded or not as its caller decided.
     */
    sampleRatio: z.number().min(0).max(1).default(defaults.telemetry.sampleRatio),
    /** Spans held for export at most; beyond it new spans are dropped (a collector that is down). */
    maxQueueSpans: z.number().int().min(1).default(defaults.telemetry.maxQueueSpans),
  })
  .prefault({});

export type TelemetryConfig = z.infer<typeof telemetryConfigSchema>;
