import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness } from './support/gravity-harness.js';

let harness: Harness;
beforeAll(async () => {
  harness = await startHarness();
});
afterAll(async () => {
  await harness?.close();
});

describe('the openai SDK against gravity serve', () => {
  it('lists the generated models', async () => {
    const models = await harness.client.models.list();
    expect(models.data.map((model) => model.id).sort()).toEqual(['gravity-tiny', 'gravity-tiny-random']);
  });

  it('completes a prompt with the alphabet model and stops at its end-of-sequence', async () => {
    const completion = await harness.client.completions.create({
      model: 'gravity-tiny',
      prompt: 'a b c',
      max_tokens: 50,
      temperature: 0,
    });
    expect(completion.object).toBe('text_completion');
    expect(completion.choices[0]?.text).toBe(' d e f g h i j k l m n o p q r s t u v w x y z');
    expect(completion.choices[0]?.finish_reason).toBe('stop');
    expect(completion.usage).toMatchObject({
      completion_tokens: 23,
      total_tokens: (completion.usage?.prompt_tokens ?? 0) + 23,
    });
  });

  it('stops at max_tokens with finish_reason length', async () => {
    const completion = await harness.client.completions.create({
      model: 'gravity-tiny',
      prompt: 'a',
      max_tokens: 3,
    });
    expect(completion.choices[0]?.text).toBe(' b c d');
    expect(completion.choices[0]?.finish_reason).toBe('length');
  });

  it('cuts the output at a stop sequence', async () => {
    const completion = await harness.client.completions.create({
      model: 'gravity-tiny',
      prompt: 'a',
      max_tokens: 20,
      stop: [' f'],
    });
    expect(completion.choices[0]?.text).toBe(' b c d e');
    expect(completion.choices[0]?.finish_reason).toBe('stop');
  });

  it('answers a chat with the model reply, usage and the echoed service tier', async () => {
    const { data: completion, response } = await harness.client.chat.completions
      .create({
        model: 'gravity-tiny',
        messages: [
          { role: 'system', content: 'You count.' },
          {
            role: 'user',
            content: [
              { type: 'text', text: 'Count ' },
              { type: 'text', text: 'please.' },
            ],
          },
        ],
        max_completion_tokens: 4,
        service_tier: 'flex',
        user: 'tester',
      })
      .withResponse();
    expect(response.headers.get('x-request-id')).toMatch(/^[\w-]{16}$/);
    expect(completion.object).toBe('chat.completion');
    expect(completion.id).toBe(`chatcmpl-${response.headers.get('x-request-id')}`);
    expect(completion.choices[0]?.message).toMatchObject({ role: 'assistant', content: ' a b c d' });
    expect(completion.choices[0]?.finish_reason).toBe('length');
    expect(completion.service_tier).toBe('flex');
    expect(completion.usage?.completion_tokens).toBe(4);
    expect(completion.usage?.prompt_tokens).toBeGreaterThan(5);
  });

  it('streams a chat as OpenAI does: role first, deltas, finish, usage chunk with empty choices', async () => {
    const stream = await harness.client.chat.completions.create({
      model: 'gravity-tiny',
      messages: [{ role: 'user', content: 'go' }],
      max_tokens: 5,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks[0]?.choices[0]?.delta).toEqual({ role: 'assistant', content: '' });
    const text = chunks.map((chunk) => chunk.choices[0]?.delta.content ?? '').join('');
    expect(text).toBe(' a b c d e');
    const finishing = chunks.at(-2);
    expect(finishing?.choices[0]?.finish_reason).toBe('length');
    const usageChunk = chunks.at(-1);
    expect(usageChunk?.choices).toEqual([]);
    expect(usageChunk?.usage?.completion_tokens).toBe(5);
    expect(new Set(chunks.map((chunk) => chunk.id)).size).toBe(1);
    expect(chunks.every((chunk) => chunk.service_tier === 'default')).toBe(true);
  });

  it('streams a completion without a usage chunk unless asked', async () => {
    const stream = await harness.client.completions.create({
      model: 'gravity-tiny',
      prompt: 'x',
      max_tokens: 10,
      stream: true,
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.map((chunk) => chunk.choices[0]?.text ?? '').join('')).toBe(' y z');
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('stop');
    expect(chunks.every((chunk) => chunk.usage == null)).toBe(true);
  });

  it('reuses the cached prompt prefix of a slot and reports it as cached tokens', async () => {
    const system = 'You are a counting assistant. '.repeat(20);
    const ask = () =>
      harness.client.chat.completions.create({
        model: 'gravity-tiny',
        messages: [
          { role: 'system', content: system },
          { role: 'user', content: 'again' },
        ],
        max_tokens: 2,
      });
    await ask();
    const second = await ask();
    const usage = second.usage;
    expect(usage?.prompt_tokens_details?.cached_tokens).toBe((usage?.prompt_tokens ?? 0) - 1);
  });

  it('exposes request counts, token counters, latency histograms and in-flight gauges on /metrics', async () => {
    const text = await (await fetch(`${harness.url}/metrics`)).text();
    expect(text).toMatch(
      /gravity_requests_total\{endpoint="chat.completions",model="gravity-tiny",status="200"\} \d+/,
    );
    expect(text).toMatch(
      /gravity_completion_tokens_total\{model="gravity-tiny",tier="default",tenant="anonymous"\} \d+/,
    );
    expect(text).toMatch(/gravity_time_to_first_token_seconds_bucket\{le="0.005",model="gravity-tiny"\}/);
    expect(text).toMatch(/gravity_inter_token_latency_seconds_count\{model="gravity-tiny"\} [1-9]/);
    expect(text).toMatch(/gravity_requests_in_flight\{model="gravity-tiny"\} 0/);
    // Four generation slots and the default embedding context.
    expect(text).toMatch(/gravity_engine_slots\{engine="tiny",state="total"\} 5/);
    // Gravity's own time per request, excluding the engine, observed for every request.
    expect(text).toMatch(/gravity_gateway_overhead_seconds_count\{endpoint="chat.completions"\} [1-9]/);
  });

  it('answers health and readiness probes', async () => {
    expect((await fetch(`${harness.url}/healthz`)).status).toBe(200);
    const ready = await fetch(`${harness.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready' });
  });
});
