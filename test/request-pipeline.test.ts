import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Admission } from '../src/admission/admission.js';
import { openModeCaller } from '../src/admission/request-caller.js';
import { SqliteKeyStore } from '../src/admission/sqlite-key-store.js';
import { errors } from '../src/core/errors.js';
import type { RequestContext } from '../src/core/request-context.js';
import type { StreamPart } from '../src/core/stream-parts.js';
import { SqliteLedgerStore } from '../src/metering/ledger/sqlite-ledger-store.js';
import type { UsageRecord } from '../src/metering/usage-record.js';
import {
  type PipelineFailure,
  type PipelineRequest,
  RequestPipeline,
  type ResponseRenderer,
} from '../src/pipeline/request-pipeline.js';
import { type Harness, startHarness } from './support/gravity-harness.js';

/**
 * The request pipeline on a live gateway (one fast emulated replica, the real ledger), driven the way an
 * entry point drives it, with a renderer that records what it was told: every outcome ends in exactly
 * one ledger record, committed before the renderer's last call.
 */
const model = 'llama-3.1-8b';
const document = {
  engines: {
    replica: { type: 'emulated', hardware: 'h200', model, weightDtype: 'fp8', contextTokens: 8192 },
  },
  models: { [model]: { engine: 'replica' } },
};

let harness: Harness;
let ledger: SqliteLedgerStore;
let pipeline: RequestPipeline;
const unexpected: unknown[] = [];

beforeAll(async () => {
  harness = await startHarness((config) => {
    config.server.shutdownGraceMs = 0;
  }, document);
  ledger = new SqliteLedgerStore(harness.ledgerPath);
  pipeline = new RequestPipeline({
    gateway: harness.server.gateway,
    log: (_context, error) => unexpected.push(error),
  });
});
afterAll(async () => {
  await ledger?.close();
  await harness?.close();
});

async function recordsOf(requestId: string): Promise<UsageRecord[]> {
  return (await ledger.records({})).filter((record) => record.requestId === requestId);
}

/** Renders nothing; notes each call and, at the last one, whether the ledger already holds the request. */
class RecordingRenderer implements ResponseRenderer<PipelineRequest, string> {
  committed = false;
  readonly calls: string[] = [];
  texts = 0;
  failure: PipelineFailure | null = null;
  recordedBeforeLastCall: UsageRecord[] = [];

  constructor(
    private readonly options: { commitAtStart?: boolean; afterTexts?: (count: number) => void } = {},
  ) {}

  admitted(): void {
    this.calls.push('admitted');
  }

  started(): void {
    this.calls.push('started');
    if (this.options.commitAtStart) this.committed = true;
  }

  text(_part: Extract<StreamPart, { type: 'text-delta' }>): undefined {
    this.texts++;
    this.options.afterTexts?.(this.texts);
    return undefined;
  }

  async finished(_part: Extract<StreamPart, { type: 'finish' }>, context: RequestContext): Promise<string> {
    this.calls.push('finished');
    this.recordedBeforeLastCall = await recordsOf(context.requestId);
    return context.requestId;
  }

  async failed(failure: PipelineFailure, context: RequestContext): Promise<string> {
    this.calls.push('failed');
    this.failure = failure;
    this.recordedBeforeLastCall = await recordsOf(context.requestId);
    return context.requestId;
  }
}

function chat(content: string, maxTokens: number, requestedModel = model): PipelineRequest {
  return {
    generation: {
      model: requestedModel,
      input: { kind: 'chat', messages: [{ role: 'user', content }] },
      maxTokens,
      temperature: 1,
      topP: 1,
      seed: 7,
      stop: [],
      user: null,
    },
    serviceTier: 'auto',
  };
}

function run(options: {
  renderer: RecordingRenderer;
  parse: () => PipelineRequest;
  signal?: AbortSignal;
  through?: RequestPipeline;
}): Promise<string> {
  return (options.through ?? pipeline).run({
    endpoint: 'chat.completions',
    received: { model, stream: false },
    caller: openModeCaller,
    parse: options.parse,
    renderer: options.renderer,
    signal: options.signal ?? new AbortController().signal,
  });
}

describe('the request pipeline', () => {
  it('runs a request to its finish, and the record is committed before the renderer finishes', async () => {
    const renderer = new RecordingRenderer();
    const requestId = await run({ renderer, parse: () => chat('Say hello.', 6) });
    expect(renderer.calls).toEqual(['started', 'finished']);
    expect(renderer.texts).toBeGreaterThan(0);
    expect(renderer.recordedBeforeLastCall).toMatchObject([
      { status: 200, errorCode: null, tier: 'default' },
    ]);
    expect(await recordsOf(requestId)).toHaveLength(1);
  });

  it('answers input that does not parse as the failure of stage input, recorded with its status', async () => {
    const renderer = new RecordingRenderer();
    const requestId = await run({
      renderer,
      parse: () => {
        throw errors.invalidRequest("Missing required parameter: 'messages'.", 'messages');
      },
    });
    expect(renderer.calls).toEqual(['failed']);
    expect(renderer.failure).toMatchObject({ stage: 'input', cancelled: false, error: { status: 400 } });
    expect(renderer.recordedBeforeLastCall).toMatchObject([{ status: 400 }]);
    expect(await recordsOf(requestId)).toHaveLength(1);
  });

  it('tells an admission refusal from an execution failure', async () => {
    const keys = new SqliteKeyStore(':memory:');
    try {
      const admission = new Admission({
        keys,
        clock: harness.server.gateway.clock,
        keyCacheMs: 1000,
        required: false,
        tenants: { anonymous: { rpm: 1, period: 'month' } },
        unboundedCompletionReserveTokens: 1024,
      });
      const limited = new RequestPipeline({ gateway: harness.server.gateway, admission, log: () => {} });
      const admitted = new RecordingRenderer();
      await run({ renderer: admitted, parse: () => chat('One.', 2), through: limited });
      expect(admitted.calls).toEqual(['admitted', 'started', 'finished']);

      const refused = new RecordingRenderer();
      const refusedId = await run({ renderer: refused, parse: () => chat('Two.', 2), through: limited });
      expect(refused.calls).toEqual(['failed']);
      expect(refused.failure).toMatchObject({ stage: 'admission', error: { status: 429 } });
      expect(await recordsOf(refusedId)).toMatchObject([{ status: 429, errorCode: 'rate_limit_exceeded' }]);
    } finally {
      keys.close();
    }

    const unknownModel = new RecordingRenderer();
    const unknownId = await run({ renderer: unknownModel, parse: () => chat('Hi.', 2, 'no-such-model') });
    expect(unknownModel.failure).toMatchObject({ stage: 'execution', error: { status: 404 } });
    expect(await recordsOf(unknownId)).toMatchObject([{ status: 404, errorCode: 'model_not_found' }]);
  });

  it('records 499 and stops the generation when the entry point gives up, after bytes went out too', async () => {
    const gone = new AbortController();
    const renderer = new RecordingRenderer({
      commitAtStart: true,
      afterTexts: (count) => {
        if (count === 3) gone.abort(errors.cancelled('The client closed the connection.'));
      },
    });
    const requestId = await run({
      renderer,
      parse: () => chat('Write at length.', 2000),
      signal: gone.signal,
    });
    expect(renderer.calls).toEqual(['started', 'failed']);
    expect(renderer.failure).toMatchObject({ cancelled: true, error: { code: 'cancelled' } });
    const [record] = await recordsOf(requestId);
    expect(record).toMatchObject({ status: 499, errorCode: 'cancelled' });
    // Aborted within a few tokens, not run to max_tokens.
    expect(record?.completionTokens ?? 0).toBeLessThan(50);
  });

  it('keeps status 200 with the error code for a failure after bytes went out (shutdown), once', async () => {
    let started!: () => void;
    const streaming = new Promise<void>((resolve) => {
      started = resolve;
    });
    const renderer = new RecordingRenderer({
      commitAtStart: true,
      afterTexts: (count) => {
        if (count === 1) started();
      },
    });
    const running = run({ renderer, parse: () => chat('Write at length.', 4000) });
    await streaming;
    await harness.server.close();
    const requestId = await running;
    expect(renderer.failure).toMatchObject({
      stage: 'execution',
      cancelled: false,
      error: { code: 'shutting_down' },
    });
    expect(renderer.recordedBeforeLastCall).toMatchObject([{ status: 200, errorCode: 'shutting_down' }]);
    expect(await recordsOf(requestId)).toHaveLength(1);
    expect(unexpected).toEqual([]);
  });
});
