import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteLedgerStore } from '../src/metering/ledger/sqlite-ledger-store.js';
import type { UsageRecord } from '../src/metering/usage-record.js';
import { type Harness, startHarness } from './support/gravity-harness.js';
import { type OtlpReceiver, type ReceivedSpan, startOtlpReceiver } from './support/otlp-receiver.js';
import {
  chatStreamWithoutUsage,
  type ReplayUpstream,
  startReplayUpstream,
} from './support/replay-upstream.js';

/**
 * OpenTelemetry end to end: Gravity exports each request's spans over OTLP/HTTP (protobuf) to a loopback
 * receiver, continues the client's trace, forwards the engine span's context to a loopback upstream, and
 * keeps the client's x-request-id. With telemetry off nothing is exported, and the client's traceparent
 * still reaches the upstream unchanged.
 */

const serverKind = 2;
const clientKind = 3;
const errorStatus = 2;

/** A chat stream with the upstream's own usage chunk (12 prompt tokens, 3 completion tokens). */
function chatStreamWithUsage(): string[] {
  const events = chatStreamWithoutUsage([' one', ' two', ' three']);
  const usage = JSON.stringify({
    id: 'chatcmpl-replay',
    object: 'chat.completion.chunk',
    created: 1,
    model: 'replayed',
    choices: [],
    usage: { prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 },
  });
  return [...events.slice(0, -1), usage, '[DONE]'];
}

function newTraceparent(): { traceId: string; parentSpanId: string; header: string } {
  const traceId = randomBytes(16).toString('hex');
  const parentSpanId = randomBytes(8).toString('hex');
  return { traceId, parentSpanId, header: `00-${traceId}-${parentSpanId}-01` };
}

async function ledgerRecord(harness: Harness, requestId: string): Promise<UsageRecord> {
  const ledger = new SqliteLedgerStore(harness.ledgerPath);
  try {
    const record = (await ledger.records({})).find((candidate) => candidate.requestId === requestId);
    if (!record) throw new Error(`no ledger record for ${requestId}`);
    return record;
  } finally {
    await ledger.close();
  }
}

function only(spans: ReceivedSpan[], predicate: (span: ReceivedSpan) => boolean): ReceivedSpan {
  const found = spans.filter(predicate);
  expect(found).toHaveLength(1);
  return found[0] as ReceivedSpan;
}

/** The request's spans as a tree: the server span's direct children and the attempts' children. */
function spanTree(spans: ReceivedSpan[], incomingParent: string) {
  const server = only(spans, (span) => span.kind === serverKind);
  expect(server.parentSpanId).toBe(incomingParent);
  const children = (parent: ReceivedSpan) => spans.filter((span) => span.parentSpanId === parent.spanId);
  const admission = only(children(server), (span) => span.name === 'gravity.admission');
  const attempts = children(server).filter((span) => span.name === 'gravity.attempt');
  const stages = attempts.map((attempt) => ({
    attempt,
    routing: only(children(attempt), (span) => span.name === 'gravity.routing'),
    queue: only(children(attempt), (span) => span.name === 'gravity.queue'),
    engine: only(children(attempt), (span) => span.kind === clientKind),
  }));
  // Every span is in the tree: nothing hangs elsewhere.
  expect(spans).toHaveLength(2 + attempts.length * 4);
  return { server, admission, stages };
}

describe('OpenTelemetry tracing', () => {
  let receiver: OtlpReceiver;
  let upstream: ReplayUpstream;
  let gravity: Harness;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    upstream = await startReplayUpstream({ events: chatStreamWithUsage(), delayMs: 1 });
    gravity = await startHarness(undefined, {
      engines: {
        up: { type: 'openai-upstream', baseUrl: upstream.url, connectTimeoutMs: 5000 },
        // Port 9 (discard) on loopback: nothing listens, connections are refused at once (retryable).
        dead: { type: 'openai-upstream', baseUrl: 'http://127.0.0.1:9/v1', connectTimeoutMs: 2000 },
      },
      models: {
        'traced-model': { engine: 'up', upstreamModel: 'replayed' },
        'flaky-model': { engines: ['dead', 'up'], upstreamModel: 'replayed' },
      },
      routing: {
        policy: 'round-robin',
        health: { consecutiveFailures: 1000, intervalMs: 0 },
        retries: { maxAttempts: 2, minRetriesPerSecond: 100 },
      },
      telemetry: { otlp: { endpoint: receiver.url }, serviceName: 'gravity-under-test' },
    });
  });

  afterAll(async () => {
    await gravity?.close();
    await upstream?.close();
    await receiver?.close();
  });

  it('traces a non-streamed chat request as a child of its traceparent, with GenAI attributes equal to the ledger', async () => {
    const incoming = newTraceparent();
    const response = await fetch(`${gravity.url}/v1/chat/completions`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        traceparent: incoming.header,
        tracestate: 'client=7',
        'x-request-id': 'client-request-42',
      },
      body: JSON.stringify({
        model: 'traced-model',
        messages: [{ role: 'user', content: 'count to three' }],
        max_tokens: 50,
      }),
    });
    expect(response.status).toBe(200);
    // The client's id comes back as it was sent; the response id stays Gravity's own.
    expect(response.headers.get('x-request-id')).toBe('client-request-42');
    const body = (await response.json()) as {
      id: string;
      usage: { prompt_tokens: number; completion_tokens: number };
    };
    expect(body.id).not.toContain('client-request-42');
    expect(body.usage).toMatchObject({ prompt_tokens: 12, completion_tokens: 3 });

    const spans = await receiver.waitForTrace(incoming.traceId);
    const { server, admission, stages } = spanTree(spans, incoming.parentSpanId);
    expect(stages).toHaveLength(1);
    const { attempt, routing, queue, engine } = stages[0] as (typeof stages)[number];

    const requestId = server.attributes['gravity.request.id'] as string;
    expect(body.id).toBe(`chatcmpl-${requestId}`);
    const record = await ledgerRecord(gravity, requestId);
    expect(record.clientRequestId).toBe('client-request-42');

    expect(server.name).toBe('chat traced-model');
    expect(server.resource['service.name']).toBe('gravity-under-test');
    expect(server.attributes).toMatchObject({
      'gen_ai.operation.name': 'chat',
      'gen_ai.request.model': 'traced-model',
      'gen_ai.response.model': 'traced-model',
      'gen_ai.request.max_tokens': 50,
      'gen_ai.usage.input_tokens': record.promptTokens,
      'gen_ai.usage.output_tokens': record.completionTokens,
      'gen_ai.response.finish_reasons': ['stop'],
      'gravity.tier': record.tier,
      'gravity.tenant': 'anonymous',
      'gravity.replica': 'up',
      'gravity.client_request.id': 'client-request-42',
      'gravity.energy.joules': record.energyJoules,
      'gravity.energy.source': record.energySource,
      'gravity.cost.usd': record.costUsd,
      'http.response.status_code': 200,
    });
    expect(record.promptTokens).toBe(12);
    expect(record.completionTokens).toBe(3);
    expect(engine.name).toBe('chat traced-model');
    expect(engine.attributes).toMatchObject({
      'gen_ai.operation.name': 'chat',
      'gen_ai.request.max_tokens': 50,
      'gen_ai.usage.input_tokens': 12,
      'gen_ai.usage.output_tokens': 3,
      'gravity.replica': 'up',
      'gravity.attempt': 1,
    });
    expect(routing.attributes['gravity.replica']).toBe('up');
    expect(attempt.status.code).not.toBe(errorStatus);

    // The stages follow one another inside the request.
    expect(admission.startTimeUnixNano).toBe(server.startTimeUnixNano);
    expect(admission.endTimeUnixNano <= routing.endTimeUnixNano).toBe(true);
    expect(routing.endTimeUnixNano).toBe(queue.startTimeUnixNano);
    expect(queue.endTimeUnixNano).toBe(engine.startTimeUnixNano);
    expect(engine.endTimeUnixNano <= server.endTimeUnixNano).toBe(true);

    // The upstream was called in the same trace, under the engine span, with the client's tracestate.
    const sent = upstream.received.at(-1)?.headers;
    expect(sent?.traceparent).toBe(`00-${incoming.traceId}-${engine.spanId}-01`);
    expect(sent?.tracestate).toBe('client=7');
    expect(receiver.contentTypes.every((type) => type === 'application/x-protobuf')).toBe(true);
  });

  it('traces a streamed chat request with the usage the stream reported', async () => {
    const incoming = newTraceparent();
    const response = await fetch(`${gravity.url}/v1/chat/completions`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        traceparent: incoming.header,
        'x-request-id': '3f1c2a9e-7d4b-4c1a-9b0e-2a5d6c7e8f90',
      },
      body: JSON.stringify({
        model: 'traced-model',
        messages: [{ role: 'user', content: 'count to three' }],
        stream: true,
        stream_options: { include_usage: true },
      }),
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('x-request-id')).toBe('3f1c2a9e-7d4b-4c1a-9b0e-2a5d6c7e8f90');
    const text = await response.text();
    const usageChunk = text
      .split('\n\n')
      .filter((event) => event.startsWith('data: {'))
      .map((event) => JSON.parse(event.slice('data: '.length)) as { usage?: Record<string, number> | null })
      .find((chunk) => chunk.usage);
    expect(usageChunk?.usage).toMatchObject({ prompt_tokens: 12, completion_tokens: 3 });

    const spans = await receiver.waitForTrace(incoming.traceId);
    const { server, stages } = spanTree(spans, incoming.parentSpanId);
    const engine = (stages[0] as (typeof stages)[number]).engine;
    const record = await ledgerRecord(gravity, server.attributes['gravity.request.id'] as string);
    expect(record.clientRequestId).toBe('3f1c2a9e-7d4b-4c1a-9b0e-2a5d6c7e8f90');
    expect(server.attributes).toMatchObject({
      'gen_ai.request.stream': true,
      'gen_ai.usage.input_tokens': record.promptTokens,
      'gen_ai.usage.output_tokens': record.completionTokens,
      'gravity.cost.usd': record.costUsd,
      'gravity.energy.joules': record.energyJoules,
    });
    expect(server.attributes['gravity.ttft_ms']).toBe(record.ttftMs);
    expect(engine.attributes['gen_ai.usage.output_tokens']).toBe(3);
    expect(upstream.received.at(-1)?.headers.traceparent).toBe(`00-${incoming.traceId}-${engine.spanId}-01`);
  });

  it('gives each retry attempt its own span, the failed one marked as an error', async () => {
    // Round-robin over [dead, up]: of two requests, one is tried on the dead replica first.
    const traces: ReceivedSpan[][] = [];
    for (let request = 0; request < 2; request++) {
      const incoming = newTraceparent();
      const response = await fetch(`${gravity.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', traceparent: incoming.header },
        body: JSON.stringify({ model: 'flaky-model', messages: [{ role: 'user', content: 'hi' }] }),
      });
      expect(response.status).toBe(200);
      await response.text();
      traces.push(await receiver.waitForTrace(incoming.traceId));
    }
    const retried = traces.find(
      (spans) => spans.filter((span) => span.name === 'gravity.attempt').length === 2,
    );
    expect(retried).toBeDefined();
    const spans = retried as ReceivedSpan[];
    const server = only(spans, (span) => span.kind === serverKind);
    const { stages } = spanTree(spans, server.parentSpanId);
    const [first, second] = stages.sort(
      (a, b) =>
        Number(a.attempt.attributes['gravity.attempt']) - Number(b.attempt.attributes['gravity.attempt']),
    ) as [(typeof stages)[number], (typeof stages)[number]];
    expect(first.attempt.attributes).toMatchObject({ 'gravity.attempt': 1, 'gravity.replica': 'dead' });
    expect(first.attempt.status.code).toBe(errorStatus);
    expect(first.engine.status.code).toBe(errorStatus);
    expect(second.attempt.attributes).toMatchObject({ 'gravity.attempt': 2, 'gravity.replica': 'up' });
    expect(second.engine.status.code).not.toBe(errorStatus);
    expect(first.attempt.endTimeUnixNano <= second.attempt.startTimeUnixNano).toBe(true);
    expect(server.attributes['gravity.replica']).toBe('up');
  });

  it('replaces an x-request-id that is too long or has odd characters', async () => {
    for (const sent of ['a'.repeat(129), 'has space', 'semi;colon']) {
      const response = await fetch(`${gravity.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-request-id': sent },
        body: JSON.stringify({ model: 'traced-model', messages: [{ role: 'user', content: 'hi' }] }),
      });
      expect(response.status).toBe(200);
      const returned = response.headers.get('x-request-id') ?? '';
      expect(returned).not.toBe(sent);
      expect(returned).toMatch(/^[A-Za-z0-9_-]{16}$/);
      const record = await ledgerRecord(gravity, returned);
      expect(record.clientRequestId).toBeNull();
    }
  });
});

describe('with telemetry off', () => {
  let receiver: OtlpReceiver;
  let upstream: ReplayUpstream;
  let gravity: Harness;
  const environment = process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    // The SDK's own environment variable points at the receiver: Gravity must not pick it up by itself.
    process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = receiver.url;
    upstream = await startReplayUpstream({ events: chatStreamWithUsage(), delayMs: 1 });
    gravity = await startHarness(undefined, {
      engines: { up: { type: 'openai-upstream', baseUrl: upstream.url, connectTimeoutMs: 5000 } },
      models: { 'traced-model': { engine: 'up', upstreamModel: 'replayed' } },
    });
  });

  afterAll(async () => {
    await gravity?.close();
    await upstream?.close();
    await receiver?.close();
    if (environment === undefined) delete process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
    else process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = environment;
  });

  it('exports nothing, and forwards the client traceparent unchanged', async () => {
    const incoming = newTraceparent();
    for (const stream of [false, true]) {
      const response = await fetch(`${gravity.url}/v1/chat/completions`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          traceparent: incoming.header,
          tracestate: 'client=7',
          'x-request-id': 'kept-when-off',
        },
        body: JSON.stringify({ model: 'traced-model', messages: [{ role: 'user', content: 'hi' }], stream }),
      });
      expect(response.status).toBe(200);
      expect(response.headers.get('x-request-id')).toBe('kept-when-off');
      await response.text();
      expect(upstream.received.at(-1)?.headers.traceparent).toBe(incoming.header);
      expect(upstream.received.at(-1)?.headers.tracestate).toBe('client=7');
    }
    // Longer than the export interval (1 s) of a tracer that should not exist.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(receiver.spans).toHaveLength(0);
    expect(receiver.contentTypes).toHaveLength(0);
  });

  it('sends no traceparent upstream when the client sent none or a malformed one', async () => {
    for (const traceparent of [
      undefined,
      '00-zz-not-a-traceparent-01',
      `00-${'0'.repeat(32)}-${'1'.repeat(16)}-01`,
    ]) {
      const response = await fetch(`${gravity.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(traceparent && { traceparent }) },
        body: JSON.stringify({ model: 'traced-model', messages: [{ role: 'user', content: 'hi' }] }),
      });
      expect(response.status).toBe(200);
      await response.text();
      expect(upstream.received.at(-1)?.headers.traceparent).toBeUndefined();
    }
  });
});

describe('with a collector that never answers', () => {
  let upstream: ReplayUpstream;
  let gravity: Harness;
  let collector: Server;
  const exports: number[] = [];

  beforeAll(async () => {
    // Accepts each export and never answers it: every export waits for its timeout.
    collector = createServer(() => {
      exports.push(Date.now());
    });
    await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
    const { port } = collector.address() as AddressInfo;
    upstream = await startReplayUpstream({ events: chatStreamWithUsage(), delayMs: 1 });
    gravity = await startHarness(undefined, {
      engines: { up: { type: 'openai-upstream', baseUrl: upstream.url, connectTimeoutMs: 5000 } },
      models: { 'traced-model': { engine: 'up', upstreamModel: 'replayed' } },
      telemetry: {
        otlp: { endpoint: `http://127.0.0.1:${port}/v1/traces`, timeoutMs: 60_000 },
        maxQueueSpans: 8,
      },
    });
  });

  afterAll(async () => {
    await gravity?.close();
    await upstream?.close();
    collector?.closeAllConnections();
    collector?.close();
  });

  it('answers every request while its spans wait, then drop, behind the stuck export', async () => {
    const answers: number[] = [];
    for (let round = 0; round < 3; round++) {
      const responses = await Promise.all(
        Array.from({ length: 10 }, () =>
          fetch(`${gravity.url}/v1/chat/completions`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', traceparent: newTraceparent().header },
            body: JSON.stringify({ model: 'traced-model', messages: [{ role: 'user', content: 'hi' }] }),
            signal: AbortSignal.timeout(10_000),
          }),
        ),
      );
      for (const response of responses) {
        answers.push(response.status);
        await response.text();
      }
      // Past the export interval: the processor has sent a batch and is waiting on it.
      await new Promise((resolve) => setTimeout(resolve, 1100));
    }
    expect(answers).toEqual(Array.from({ length: 30 }, () => 200));
    expect(exports.length).toBeGreaterThan(0);
  });

  it('shuts down without waiting out the export timeout, and without an error', async () => {
    // The SDK alone would wait the whole 30 s export timeout here, then reject with "Timeout".
    await expect(gravity.close()).resolves.toBeUndefined();
  }, 15_000);
});
