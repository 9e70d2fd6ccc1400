import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness } from './support/gravity-harness.js';

let harness: Harness;
beforeAll(async () => {
  harness = await startHarness();
});
afterAll(async () => {
  await harness?.close();
});

function engineLoad(engineId: string) {
  const engine = harness.server.gateway.engines.find((candidate) => candidate.id === engineId);
  if (!engine) throw new Error(`no engine ${engineId}`);
  return engine.load();
}

async function streamText(prompt: string, seed: number, maxTokens: number): Promise<string> {
  const stream = await harness.client.chat.completions.create({
    model: 'gravity-tiny-random',
    messages: [{ role: 'user', content: prompt }],
    max_tokens: maxTokens,
    temperature: 0.9,
    seed,
    stream: true,
  });
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
  return text;
}

describe('continuous batching on one context', () => {
  it('completes eight concurrent streams on four slots, each equal to the same request run alone', async () => {
    const requests = Array.from({ length: 8 }, (_, index) => ({
      prompt: `question number ${index} about ${'xyz'.repeat(index)}`,
      seed: 100 + index,
    }));
    const alone: string[] = [];
    for (const request of requests) alone.push(await streamText(request.prompt, request.seed, 48));

    let maxBusy = 0;
    let maxWaiting = 0;
    const sampler = setInterval(() => {
      const load = engineLoad('tiny-random');
      maxBusy = Math.max(maxBusy, load.slotsBusy);
      maxWaiting = Math.max(maxWaiting, load.waiting);
    }, 1);
    const together = await Promise.all(
      requests.map((request) => streamText(request.prompt, request.seed, 48)),
    );
    clearInterval(sampler);

    expect(together).toEqual(alone);
    expect(new Set(alone).size).toBe(8);
    expect(alone.every((text) => text.length > 0)).toBe(true);
    // All four slots were used at once and the other four requests waited instead of failing.
    expect(maxBusy).toBe(4);
    expect(maxWaiting).toBeGreaterThan(0);
    expect(engineLoad('tiny-random')).toEqual({ slotsTotal: 4, slotsBusy: 0, waiting: 0 });
  });
});

describe('client disconnects', () => {
  it('abort generation mid-stream and free the slot within a few tokens', async () => {
    const controller = new AbortController();
    const stream = await harness.client.chat.completions.create(
      {
        model: 'gravity-tiny-random',
        messages: [{ role: 'user', content: 'talk forever' }],
        max_tokens: 4000,
        stream: true,
      },
      { signal: controller.signal },
    );
    let chunks = 0;
    // The SDK ends the iteration quietly when its own signal aborts the request.
    for await (const _chunk of stream) {
      chunks++;
      if (chunks === 5) controller.abort();
    }
    expect(chunks).toBe(5);
    const deadline = Date.now() + 2000;
    while (engineLoad('tiny-random').slotsBusy > 0 && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 5));
    expect(engineLoad('tiny-random').slotsBusy).toBe(0);

    const metrics = await (await fetch(`${harness.url}/metrics`)).text();
    expect(metrics).toMatch(
      /gravity_requests_total\{endpoint="chat.completions",model="gravity-tiny-random",status="499"\} 1/,
    );
    // Far fewer than the 4000 tokens asked for were generated.
    const completionTokens = Number(
      /gravity_completion_tokens_total\{model="gravity-tiny-random",tier="default",tenant="anonymous"\} (\d+)/.exec(
        metrics,
      )?.[1] ?? 'NaN',
    );
    expect(completionTokens).toBeLessThan(16 * 48 + 200);
  });

  it('removes a request waiting for a slot from the queue when its client leaves', async () => {
    const holders = Array.from({ length: 4 }, () => new AbortController());
    const held = holders.map((controller) =>
      harness.client.chat.completions
        .create(
          {
            model: 'gravity-tiny-random',
            messages: [{ role: 'user', content: 'hold the slot' }],
            max_tokens: 4000,
            stream: true,
          },
          { signal: controller.signal },
        )
        .then(async (stream) => {
          for await (const _chunk of stream) {
          }
        })
        .catch(() => {}),
    );
    while (engineLoad('tiny-random').slotsBusy < 4) await new Promise((resolve) => setTimeout(resolve, 5));
    const waiter = new AbortController();
    const waiting = harness.client.chat.completions
      .create(
        { model: 'gravity-tiny-random', messages: [{ role: 'user', content: 'wait' }], max_tokens: 5 },
        { signal: waiter.signal },
      )
      .catch((error: Error) => error);
    while (engineLoad('tiny-random').waiting < 1) await new Promise((resolve) => setTimeout(resolve, 5));
    waiter.abort();
    await waiting;
    const deadline = Date.now() + 2000;
    while (engineLoad('tiny-random').waiting > 0 && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 5));
    expect(engineLoad('tiny-random').waiting).toBe(0);
    for (const controller of holders) controller.abort();
    await Promise.all(held);
  });
});
