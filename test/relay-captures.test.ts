import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Capture,
  type CaptureUpstream,
  readCapture,
  readSseEvents,
  startCaptureUpstream,
  type UpstreamBehaviour,
} from './support/capture-upstream.js';
import { type Harness, postRaw, startHarness } from './support/gravity-harness.js';

/**
 * Recorded streams of real servers (test/fixtures/sse-captures/, README there says where each shape
 * comes from) replayed through Gravity's openai-upstream relay, compared event by event with what the
 * client receives.
 */

const vllmChat = readCapture('vllm-chat-tool-call-reasoning.sse');
const llamaServerChat = readCapture('llama-server-chat-tool-call-reasoning.sse');
const vllmCompletions = readCapture('vllm-completions-n2-logprobs.sse');
const openaiChat = readCapture('openai-chat-tool-call.sse');

/** The vLLM stream with its finish reason replaced, for the reasons no capture here ends with. */
function vllmEndingWith(finishReason: string): string {
  return vllmChat.raw.replace('"finish_reason":"tool_calls"', `"finish_reason":"${finishReason}"`);
}

/** A vLLM stream that fails inside the engine: its role opener, then its streaming error event. */
const vllmStreamingError = [
  vllmChat.events[0] as string,
  '{"error": {"object": "error", "message": "CUDA error: an illegal memory access was encountered", "type": "InternalServerError", "param": null, "code": 500}}',
  '[DONE]',
];

const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather for a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
      required: ['city'],
    },
  },
} as const;

let upstream: CaptureUpstream;
let gravity: Harness;

beforeAll(async () => {
  // What the upstream does, by the upstream model name each Gravity model `g-<name>` maps to.
  const behaviours: Record<string, UpstreamBehaviour> = {
    'vllm-tools': { kind: 'capture', raw: vllmChat.raw, pieces: 9 },
    'llama-server-tools': { kind: 'capture', raw: llamaServerChat.raw, pieces: 9 },
    'vllm-completions': { kind: 'capture', raw: vllmCompletions.raw, pieces: 5 },
    'openai-tools': { kind: 'capture', raw: openaiChat.raw, pieces: 6 },
    'vllm-content-filter': { kind: 'capture', raw: vllmEndingWith('content_filter') },
    // As a server without usage reporting would send it: the same stream without its usage chunk.
    'vllm-no-usage': {
      kind: 'capture',
      raw: vllmChat.raw
        .split('\n\n')
        .filter((block) => !(block.startsWith('data: {') && isUsageOnly(block.slice('data: '.length))))
        .join('\n\n'),
    },
    'vllm-function-call': { kind: 'capture', raw: vllmEndingWith('function_call') },
    // vLLM since 0.10.1 wraps its errors the way OpenAI does; the code stays a number.
    'vllm-400': {
      kind: 'http-error',
      status: 400,
      body: '{"error":{"message":"\\"auto\\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set","type":"BadRequestError","param":null,"code":400}}',
    },
    // vLLM before 0.10.1 answered the error object itself, not wrapped.
    'vllm-400-flat': {
      kind: 'http-error',
      status: 400,
      body: '{"object":"error","message":"This model\'s maximum context length is 4096 tokens. However, you requested 5120 tokens (1024 in the messages, 4096 in the completion). Please reduce the length of the messages or completion.","type":"BadRequestError","param":null,"code":400}',
    },
    'llama-server-400': {
      kind: 'http-error',
      status: 400,
      body: '{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it","type":"exceed_context_size_error","n_prompt_tokens":9000,"n_ctx":8192}}',
    },
    // TGI's validation errors: a string `error` and its own `error_type`.
    'tgi-422': {
      kind: 'http-error',
      status: 422,
      body: '{"error":"Input validation error: `temperature` must be strictly positive","error_type":"validation"}',
    },
    'error-before-first-token': { kind: 'stall', events: vllmStreamingError },
    'cut-before-first-token': { kind: 'cut', events: [vllmChat.events[0] as string] },
    'stalls-after-three-events': { kind: 'stall', events: vllmChat.events.slice(0, 3) },
  };
  upstream = await startCaptureUpstream(behaviours);
  gravity = await startHarness(undefined, {
    engines: {
      captures: {
        type: 'openai-upstream',
        baseUrl: upstream.url,
        connectTimeoutMs: 5000,
        maxConcurrentRequests: 8,
      },
    },
    // Gravity's model names differ from the upstream's, so the rewrite of `model` is visible.
    models: Object.fromEntries(
      Object.keys(behaviours).map((name) => [`g-${name}`, { engine: 'captures', upstreamModel: name }]),
    ),
  });
});

afterAll(async () => {
  await gravity?.close();
  await upstream?.close();
});

function topLevelField(event: string, key: string): unknown {
  return (JSON.parse(event) as Record<string, unknown>)[key];
}

/** An upstream event as the client should receive it: id, model and service_tier Gravity's, every other byte as sent. */
function relayedAs(event: string, owned: { id: string; model: string; serviceTier: string }): string {
  const upstreamId = JSON.stringify(topLevelField(event, 'id'));
  const upstreamModel = JSON.stringify(topLevelField(event, 'model'));
  const rewritten = event
    .replace(`"id":${upstreamId}`, `"id":${JSON.stringify(owned.id)}`)
    .replace(`"model":${upstreamModel}`, `"model":${JSON.stringify(owned.model)}`);
  const upstreamTier = topLevelField(event, 'service_tier');
  // OpenAI's chunks carry a service_tier, rewritten in place; other servers' get Gravity's first in the object.
  if (upstreamTier !== undefined)
    return rewritten.replace(
      `"service_tier":${JSON.stringify(upstreamTier)}`,
      `"service_tier":${JSON.stringify(owned.serviceTier)}`,
    );
  return `{"service_tier":${JSON.stringify(owned.serviceTier)},${rewritten.slice(1)}`;
}

function isUsageOnly(event: string): boolean {
  if (event === '[DONE]') return false;
  const chunk = JSON.parse(event) as { choices?: unknown[]; usage?: unknown };
  return Array.isArray(chunk.choices) && chunk.choices.length === 0 && chunk.usage != null;
}

async function streamThroughGravity(
  endpoint: 'chat/completions' | 'completions',
  body: Record<string, unknown>,
): Promise<{ events: string[]; requestId: string; status: number }> {
  const response = await fetch(`${gravity.url}/v1/${endpoint}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
  return {
    requestId: response.headers.get('x-request-id') ?? '',
    status: response.status,
    events: await readSseEvents(response),
  };
}

/** Asserts the client's events are the capture's, relayed, with Gravity's usage chunk (or none) and `[DONE]` last. */
function expectRelayedEventByEvent(options: {
  capture: Capture;
  received: string[];
  id: string;
  model: string;
  includeUsage: boolean;
  serviceTier?: string;
}): Record<string, unknown> | undefined {
  const { capture, received, id, model, includeUsage, serviceTier = 'default' } = options;
  const upstreamContent = capture.events.filter((event) => event !== '[DONE]' && !isUsageOnly(event));
  const expected = upstreamContent.map((event) => relayedAs(event, { id, model, serviceTier }));
  expect(received.slice(0, expected.length)).toEqual(expected);
  expect(received.at(-1)).toBe('[DONE]');
  if (!includeUsage) {
    expect(received).toHaveLength(expected.length + 1);
    return undefined;
  }
  expect(received).toHaveLength(expected.length + 2);
  const usageChunk = JSON.parse(received.at(-2) as string) as Record<string, unknown>;
  expect(usageChunk).toMatchObject({ id, model, choices: [] });
  return usageChunk;
}

const upstreamUsage = (capture: Capture) =>
  JSON.parse(capture.events.find(isUsageOnly) as string).usage as Record<string, number>;

describe('recorded vLLM, llama-server and OpenAI streams relayed through the openai-upstream engine', () => {
  for (const [name, capture, model, serviceTier] of [
    ['vLLM (tool call, reasoning_content, stop_reason)', vllmChat, 'g-vllm-tools', 'default'],
    [
      'llama-server (choices first, timings, tool call, reasoning_content)',
      llamaServerChat,
      'g-llama-server-tools',
      'default',
    ],
    // OpenAI's chunks have a service_tier of their own; asking Gravity for flex shows it rewritten in place.
    ['OpenAI (service_tier, usage: null, obfuscation, tool call)', openaiChat, 'g-openai-tools', 'flex'],
  ] as const) {
    it(`relays every ${name} event byte for byte but id, model and service_tier, then Gravity's usage and [DONE]`, async () => {
      const { events, requestId } = await streamThroughGravity('chat/completions', {
        model,
        messages: [{ role: 'user', content: 'Weather in Paris, in °C?' }],
        tools: [weatherTool],
        stream: true,
        stream_options: { include_usage: true },
        ...(serviceTier === 'default' ? {} : { service_tier: serviceTier }),
      });
      const usageChunk = expectRelayedEventByEvent({
        capture,
        received: events,
        id: `chatcmpl-${requestId}`,
        model,
        includeUsage: true,
        serviceTier,
      });
      // Usage is the upstream's figures with Gravity's metering under `usage.gravity`.
      const usage = usageChunk?.usage as Record<string, unknown>;
      const reported = upstreamUsage(capture);
      expect(usage).toMatchObject({
        prompt_tokens: reported.prompt_tokens,
        completion_tokens: reported.completion_tokens,
        total_tokens: reported.total_tokens,
        gravity: { usage_source: 'upstream' },
      });
      expect(typeof (usage.gravity as Record<string, unknown>).energy_joules).toBe('number');
      // Like the upstream's own usage chunk, Gravity's repeats the stream's `created` and fingerprint.
      const last = JSON.parse(
        capture.events.filter((event) => event !== '[DONE]' && !isUsageOnly(event)).at(-1) as string,
      );
      expect(usageChunk).toMatchObject({
        created: last.created,
        system_fingerprint: last.system_fingerprint ?? null,
      });
    });

    it(`sends no usage chunk for ${name} when the client did not ask for one, though the upstream sent one`, async () => {
      const { events, requestId } = await streamThroughGravity('chat/completions', {
        model,
        messages: [{ role: 'user', content: 'Weather in Paris?' }],
        tools: [weatherTool],
        stream: true,
      });
      expectRelayedEventByEvent({
        capture,
        received: events,
        id: `chatcmpl-${requestId}`,
        model,
        includeUsage: false,
      });
      // Gravity still asked the upstream for usage, to meter the response.
      expect(upstream.received.at(-1)?.body.stream_options).toEqual({ include_usage: true });
    });

    it(`answers a non-streamed ${name} request with the message the openai SDK assembles from the stream`, async () => {
      const request = {
        model,
        messages: [{ role: 'user' as const, content: 'Weather in Paris?' }],
        tools: [weatherTool],
      };
      const whole = await gravity.client.chat.completions.create(request);
      const assembledBySdk = await gravity.client.chat.completions.stream(request).finalChatCompletion();

      // The SDK keeps an unknown delta field as last sent (Object.assign), so its reasoning_content is the
      // last fragment; the upstream's own non-streamed answer, and Gravity's, carry the whole text.
      const reasoningDeltas = capture.events
        .filter((event) => event !== '[DONE]' && !isUsageOnly(event))
        .map((event) => JSON.parse(event).choices[0]?.delta?.reasoning_content)
        .filter((text): text is string => typeof text === 'string');
      const wholeMessage = whole.choices[0]?.message as unknown as Record<string, unknown>;
      const sdkMessage = assembledBySdk.choices[0]?.message as unknown as Record<string, unknown>;
      if (reasoningDeltas.length > 0) {
        expect(wholeMessage.reasoning_content).toBe(reasoningDeltas.join(''));
        expect(sdkMessage.reasoning_content).toBe(reasoningDeltas.at(-1));
      } else expect('reasoning_content' in wholeMessage).toBe(false);

      // `parsed` is the SDK stream helper's own field (null without a parseable response_format).
      const withoutReasoning = (choices: unknown[]) =>
        choices.map((choice) => {
          const { message, ...rest } = choice as { message: Record<string, unknown> };
          const { reasoning_content: _reasoning, parsed: _parsed, ...messageRest } = message;
          return { ...rest, message: messageRest };
        });
      expect(withoutReasoning(whole.choices)).toEqual(withoutReasoning(assembledBySdk.choices));
      expect(whole.choices[0]?.finish_reason).toBe('tool_calls');
      expect(whole.choices[0]?.message.tool_calls).toEqual([
        {
          id: expect.any(String),
          type: 'function',
          function: { name: 'get_weather', arguments: expect.any(String) },
        },
      ]);
      const toolCall = whole.choices[0]?.message.tool_calls?.[0];
      expect(JSON.parse(toolCall?.type === 'function' ? toolCall.function.arguments : '')).toEqual({
        city: 'Paris',
        unit: 'celsius',
      });
      expect(whole.model).toBe(model);
      expect(assembledBySdk.model).toBe(model);
      expect(whole.usage?.completion_tokens).toBe(upstreamUsage(capture).completion_tokens);
    });
  }

  it('counts reasoning and tool-call deltas as completion tokens when the upstream reports no usage', async () => {
    const whole = await gravity.client.chat.completions.create({
      model: 'g-vllm-no-usage',
      messages: [{ role: 'user', content: 'Weather in Paris?' }],
      tools: [weatherTool],
    });
    // One token per chunk that carries output (reasoning, content, a tool-call delta), as servers stream.
    const outputChunks = vllmChat.events.filter((event) => {
      if (event === '[DONE]' || isUsageOnly(event)) return false;
      const delta = JSON.parse(event).choices[0]?.delta ?? {};
      return Object.entries(delta).some(
        ([key, value]) =>
          key !== 'role' && (typeof value === 'string' || Array.isArray(value)) && value.length > 0,
      );
    });
    expect(outputChunks.length).toBeGreaterThan(30);
    expect(whole.usage).toMatchObject({
      completion_tokens: outputChunks.length,
      gravity: { usage_source: 'counted' },
    });
    expect(whole.choices[0]?.finish_reason).toBe('tool_calls');
  });

  it('relays a vLLM completions stream with two choices and logprobs event by event, and assembles it per choice', async () => {
    const model = 'g-vllm-completions';
    const { events, requestId } = await streamThroughGravity('completions', {
      model,
      prompt: 'The capital of France',
      max_tokens: 4,
      n: 2,
      logprobs: 1,
      stream: true,
      stream_options: { include_usage: true },
    });
    expectRelayedEventByEvent({
      capture: vllmCompletions,
      received: events,
      id: `cmpl-${requestId}`,
      model,
      includeUsage: true,
    });

    const whole = await gravity.client.completions.create({
      model,
      prompt: 'The capital of France',
      max_tokens: 4,
      n: 2,
      logprobs: 1,
    });
    // What the capture's chunks add up to, per choice index.
    const chunks = vllmCompletions.events
      .filter((event) => event !== '[DONE]' && !isUsageOnly(event))
      .map((event) => JSON.parse(event).choices[0]);
    for (const index of [0, 1]) {
      const mine = chunks.filter((choice) => choice.index === index);
      expect(whole.choices[index]).toMatchObject({
        index,
        text: mine.map((choice) => choice.text).join(''),
        finish_reason: 'length',
        logprobs: {
          tokens: mine.flatMap((choice) => choice.logprobs.tokens),
          token_logprobs: mine.flatMap((choice) => choice.logprobs.token_logprobs),
          text_offset: mine.flatMap((choice) => choice.logprobs.text_offset),
          top_logprobs: mine.flatMap((choice) => choice.logprobs.top_logprobs),
        },
      });
    }
  });
});

describe('upstream failures through the relay', () => {
  for (const [model, status, error] of [
    [
      'g-vllm-400',
      400,
      {
        message: '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set',
        type: 'BadRequestError',
        param: null,
        code: '400',
      },
    ],
    [
      'g-vllm-400-flat',
      400,
      {
        message: expect.stringMatching(/^This model's maximum context length is 4096 tokens/),
        type: 'BadRequestError',
        param: null,
        code: '400',
      },
    ],
    [
      'g-llama-server-400',
      400,
      {
        message: 'the request exceeds the available context size, try increasing it',
        type: 'exceed_context_size_error',
        code: '400',
      },
    ],
    [
      'g-tgi-422',
      422,
      {
        message: 'Input validation error: `temperature` must be strictly positive',
        type: 'invalid_request_error',
      },
    ],
  ] as const) {
    for (const stream of [false, true]) {
      it(`keeps ${model}'s ${status} and its OpenAI error shape, a numeric code as a string (stream: ${stream})`, async () => {
        const answer = await postRaw(
          `${gravity.url}/v1/chat/completions`,
          JSON.stringify({ model, messages: [{ role: 'user', content: 'x' }], stream }),
        );
        expect(answer.status).toBe(status);
        expect(answer.headers.get('content-type')).toMatch(/^application\/json/);
        expect(answer.json.error).toMatchObject(error);
        expect(typeof answer.json.error?.code === 'string' || answer.json.error?.code === null).toBe(true);
      });
    }
  }

  it('answers a streaming request whose upstream fails before its first token with a 502, not 200 and an SSE error', async () => {
    for (const model of ['g-error-before-first-token', 'g-cut-before-first-token']) {
      const answer = await postRaw(
        `${gravity.url}/v1/chat/completions`,
        JSON.stringify({ model, messages: [{ role: 'user', content: 'x' }], stream: true }),
      );
      expect(answer.status, model).toBe(502);
      expect(answer.headers.get('content-type'), model).toMatch(/^application\/json/);
      expect(answer.json.error, model).toMatchObject({ type: 'server_error' });
    }
  });

  it('closes the upstream request when the client disconnects mid-stream', async () => {
    const controller = new AbortController();
    const stream = await gravity.client.chat.completions.create(
      { model: 'g-stalls-after-three-events', messages: [{ role: 'user', content: 'x' }], stream: true },
      { signal: controller.signal },
    );
    const request = upstream.received.at(-1);
    expect(request?.body.model).toBe('stalls-after-three-events');
    let firstContent: string | undefined;
    try {
      for await (const chunk of stream) {
        const delta = chunk.choices[0]?.delta as { reasoning_content?: string } | undefined;
        firstContent = delta?.reasoning_content;
        if (firstContent) {
          controller.abort();
          break;
        }
      }
    } catch (error) {
      expect((error as Error).name).toMatch(/Abort/);
    }
    expect(firstContent).toBe('\n');
    // The upstream sees its request's connection close: it can stop generating. (Never resolves otherwise:
    // the replay keeps the stream open forever, so the test would time out.)
    await request?.closedEarly;
    const engine = gravity.server.gateway.engines.find((candidate) => candidate.id === 'captures');
    await expect.poll(() => engine?.load().slotsBusy).toBe(0);
  });

  for (const reason of ['content_filter', 'function_call']) {
    it(`passes an upstream's ${reason} finish reason on, streamed and assembled`, async () => {
      const model = reason === 'content_filter' ? 'g-vllm-content-filter' : 'g-vllm-function-call';
      const { events } = await streamThroughGravity('chat/completions', {
        model,
        messages: [{ role: 'user', content: 'x' }],
        stream: true,
      });
      const reasons = events
        .filter((event) => event !== '[DONE]')
        .map((event) => JSON.parse(event).choices[0]?.finish_reason)
        .filter((finish) => finish != null);
      expect(reasons).toEqual([reason]);
      const whole = await postRaw(
        `${gravity.url}/v1/chat/completions`,
        JSON.stringify({ model, messages: [{ role: 'user', content: 'x' }] }),
      );
      expect((whole.json as { choices: Array<{ finish_reason: string }> }).choices[0]?.finish_reason).toBe(
        reason,
      );
    });
  }
});

describe('the request body Gravity sends the upstream', () => {
  it('is the client body as sent (tools, tool messages, refusal: null, vendor extras), with only model and streaming rewritten', async () => {
    const sent = {
      model: 'g-vllm-tools',
      messages: [
        { role: 'developer', content: 'Use tools when they help.' },
        { role: 'user', content: [{ type: 'text', text: 'Weather in Paris?' }] },
        {
          role: 'assistant',
          content: null,
          refusal: null,
          tool_calls: [
            {
              id: 'call_8f2c',
              type: 'function',
              function: { name: 'get_weather', arguments: '{"city":"Paris"}' },
            },
          ],
        },
        { role: 'tool', tool_call_id: 'call_8f2c', content: '{"temperature_c":21}' },
        { role: 'assistant', content: 'It is 21 °C.', refusal: null, name: 'helper' },
        { role: 'user', content: 'And tomorrow?' },
      ],
      tools: [weatherTool],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
      parallel_tool_calls: false,
      response_format: {
        type: 'json_schema',
        json_schema: {
          name: 'forecast',
          strict: true,
          schema: {
            type: 'object',
            properties: { temperature_c: { type: 'number' } },
            required: ['temperature_c'],
            additionalProperties: false,
          },
        },
      },
      temperature: 0.2,
      max_completion_tokens: 64,
      seed: 7,
      user: 'tester',
      top_k: 20,
      min_p: 0.05,
      repetition_penalty: 1.1,
      chat_template_kwargs: { enable_thinking: false },
      stream: false,
    };
    const answer = await postRaw(`${gravity.url}/v1/chat/completions`, JSON.stringify(sent));
    expect(answer.status).toBe(200);
    const received = upstream.received.at(-1);
    expect(received?.path).toBe('/v1/chat/completions');
    expect(received?.body).toEqual({
      ...sent,
      model: 'vllm-tools',
      stream: true,
      stream_options: { include_usage: true },
    });
    // A streamed client's own stream options travel too, with include_usage forced on.
    await streamThroughGravity('chat/completions', {
      ...sent,
      stream: true,
      stream_options: { include_obfuscation: false, continuous_usage_stats: true },
    });
    expect(upstream.received.at(-1)?.body.stream_options).toEqual({
      include_obfuscation: false,
      continuous_usage_stats: true,
      include_usage: true,
    });
  });
});
