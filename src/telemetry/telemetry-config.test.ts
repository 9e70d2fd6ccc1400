import { describe, expect, it } from 'vitest';
import { systemClock } from '../core/clock.js';
import { startRequestTracing } from './open-telemetry.js';
import { telemetryConfigSchema } from './telemetry-config.js';

const noLog = () => {};

describe('the telemetry config', () => {
  it('is off by default: no tracing is built', () => {
    const config = telemetryConfigSchema.parse(undefined);
    expect(config).toEqual({ serviceName: 'gravity', sampleRatio: 1, maxQueueSpans: 2048 });
    expect(startRequestTracing(config, systemClock, noLog)).toBeNull();
  });

  it('builds tracing with an OTLP endpoint, and shuts down cleanly with nothing to export', async () => {
    const config = telemetryConfigSchema.parse({ otlp: { endpoint: 'http://127.0.0.1:4318/v1/traces' } });
    expect(config.otlp).toEqual({
      endpoint: 'http://127.0.0.1:4318/v1/traces',
      headers: {},
      timeoutMs: 10_000,
    });
    const tracing = startRequestTracing(config, systemClock, noLog);
    expect(tracing).not.toBeNull();
    await tracing?.shutdown();
  });

  it('refuses an endpoint that is not an http(s) URL, and a sample ratio outside 0–1', () => {
    for (const telemetry of [
      { otlp: { endpoint: 'collector:4318' } },
      { otlp: { endpoint: 'ftp://127.0.0.1/v1/traces' } },
      { sampleRatio: 1.5 },
      { maxQueueSpans: 0 },
      { exporter: 'zipkin' },
    ])
      expect(telemetryConfigSchema.safeParse(telemetry).success).toBe(false);
  });
});
