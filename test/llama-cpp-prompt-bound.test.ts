import { LlamaModel } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it, type MockInstance, vi } from 'vitest';
import { type Harness, postRaw, startHarness } from './support/gravity-harness.js';

/**
 * Oversized prompts on the in-process llama.cpp engine are refused from their length alone, before
 * anything tokenizes them on the event loop. Observed with a spy on node-llama-cpp's tokenizer, set
 * before the engine loads its model (the model binds `tokenize` when it is built).
 */
const contextTokens = 256;
let harness: Harness;
let tokenize: MockInstance<LlamaModel['tokenize']>;

beforeAll(async () => {
  tokenize = vi.spyOn(LlamaModel.prototype, 'tokenize');
  harness = await startHarness((config) => {
    const tiny = config.engines.tiny;
    if (tiny?.type === 'llama-cpp') tiny.contextTokens = contextTokens;
  });
});
afterAll(async () => {
  await harness?.close();
  tokenize.mockRestore();
});

/** Whether any text of at least `length` characters went through the tokenizer since `from`. */
function tokenizedTextOfLength(length: number, from: number): boolean {
  return tokenize.mock.calls
    .slice(from)
    .some(([text]) => (typeof text === 'string' ? text.length : 0) >= length);
}

const huge = 'lorem ipsum '.repeat(200_000); // 2.4 MB: thousands of times the context, whatever the tokens

describe('a prompt far beyond the context', () => {
  it('is refused with context_length_exceeded without being tokenized (chat, completions, embeddings)', async () => {
    const from = tokenize.mock.calls.length;
    const chat = await postRaw(
      `${harness.url}/v1/chat/completions`,
      JSON.stringify({ model: 'gravity-tiny', messages: [{ role: 'user', content: huge }], max_tokens: 2 }),
    );
    expect(chat.status).toBe(400);
    expect(chat.json.error).toMatchObject({ code: 'context_length_exceeded' });
    expect(chat.json.error?.message).toMatch(/maximum context length is 256 tokens.*at least/);

    const completion = await postRaw(
      `${harness.url}/v1/completions`,
      JSON.stringify({ model: 'gravity-tiny', prompt: huge, max_tokens: 2 }),
    );
    expect(completion.status).toBe(400);
    expect(completion.json.error).toMatchObject({ code: 'context_length_exceeded' });

    const embedding = await postRaw(
      `${harness.url}/v1/embeddings`,
      JSON.stringify({ model: 'gravity-tiny', input: ['short', huge] }),
    );
    expect(embedding.status).toBe(400);
    expect(embedding.json.error).toMatchObject({ code: 'context_length_exceeded', param: 'input' });

    expect(tokenizedTextOfLength(huge.length, from)).toBe(false);
  });

  it('still tokenizes a prompt the bound cannot decide, and refuses it from its real count', async () => {
    // Over the context in tokens, but short enough that its length alone proves nothing.
    const overByTokens = 'a '.repeat(contextTokens + 20);
    const from = tokenize.mock.calls.length;
    const response = await postRaw(
      `${harness.url}/v1/completions`,
      JSON.stringify({ model: 'gravity-tiny', prompt: overByTokens, max_tokens: 2 }),
    );
    expect(response.status).toBe(400);
    expect(response.json.error).toMatchObject({ code: 'context_length_exceeded' });
    expect(response.json.error?.message).not.toMatch(/at least/);
    expect(tokenizedTextOfLength(overByTokens.length, from)).toBe(true);
  });
});
