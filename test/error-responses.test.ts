import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, postRaw, startHarness } from './support/gravity-harness.js';

let harness: Harness;
let chatUrl: string;
beforeAll(async () => {
  harness = await startHarness((config) => {
    config.server.bodyLimitBytes = 64 * 1024;
    const tiny = config.engines.tiny;
    if (tiny?.type === 'llama-cpp') tiny.contextTokens = 256;
  });
  chatUrl = `${harness.url}/v1/chat/completions`;
});
afterAll(async () => {
  await harness?.close();
});

const validChat = { model: 'gravity-tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 };

function expectOpenAIError(
  response: { status: number; json: { error?: Record<string, unknown> }; headers: Headers },
  status: number,
  expected: Record<string, unknown>,
) {
  expect(response.status).toBe(status);
  expect(response.headers.get('content-type')).toMatch(/application\/json/);
  expect(Object.keys(response.json.error ?? {}).sort()).toEqual(['code', 'message', 'param', 'type']);
  expect(response.json.error).toMatchObject(expected);
  expect(typeof response.json.error?.message).toBe('string');
}

describe('OpenAI-style errors', () => {
  it('rejects a body that is not JSON', async () => {
    const response = await postRaw(chatUrl, '{"model": "gravity-tiny",');
    expectOpenAIError(response, 400, { type: 'invalid_request_error', code: 'invalid_json' });
  });

  it('rejects a JSON body that is not an object', async () => {
    expectOpenAIError(await postRaw(chatUrl, '[1,2,3]'), 400, { type: 'invalid_request_error' });
    expectOpenAIError(await postRaw(chatUrl, ''), 400, { type: 'invalid_request_error' });
  });

  it('names a missing required field', async () => {
    const response = await postRaw(chatUrl, JSON.stringify({ model: 'gravity-tiny' }));
    expectOpenAIError(response, 400, { code: 'missing_required_parameter', param: 'messages' });
  });

  it('names a field of the wrong type, with its path', async () => {
    const response = await postRaw(
      chatUrl,
      JSON.stringify({ ...validChat, messages: [{ role: 'user', content: 42 }] }),
    );
    expectOpenAIError(response, 400, { type: 'invalid_request_error', param: 'messages[0].content' });
    const temperature = await postRaw(chatUrl, JSON.stringify({ ...validChat, temperature: 'hot' }));
    expectOpenAIError(temperature, 400, { param: 'temperature' });
    const outOfRange = await postRaw(chatUrl, JSON.stringify({ ...validChat, top_p: 1.5 }));
    expectOpenAIError(outOfRange, 400, { param: 'top_p' });
  });

  it("says a wrong type is a wrong type, with its path, in OpenAI's words and codes", async () => {
    const asString = await postRaw(chatUrl, JSON.stringify({ ...validChat, max_tokens: '5' }));
    expectOpenAIError(asString, 400, { code: 'invalid_type', param: 'max_tokens' });
    expect(asString.json.error?.message).toBe(
      "Invalid type for 'max_tokens': expected an integer, but got a string instead.",
    );
    const decimal = await postRaw(chatUrl, JSON.stringify({ ...validChat, max_tokens: 1.5 }));
    expectOpenAIError(decimal, 400, { code: 'invalid_type', param: 'max_tokens' });
    expect(decimal.json.error?.message).toContain('but got a decimal');
    const huge = await postRaw(
      chatUrl,
      `{"model":"gravity-tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":1e400}`,
    );
    expectOpenAIError(huge, 400, { param: 'max_tokens' });
    expect(huge.json.error?.message).not.toContain('Missing');
    const below = await postRaw(chatUrl, JSON.stringify({ ...validChat, max_tokens: 0 }));
    expectOpenAIError(below, 400, { code: 'integer_below_min_value', param: 'max_tokens' });
    // A union (string or array of strings): the expected shapes are named, not "Invalid input".
    const stop = await postRaw(chatUrl, JSON.stringify({ ...validChat, stop: 7 }));
    expectOpenAIError(stop, 400, { code: 'invalid_type', param: 'stop' });
    expect(stop.json.error?.message).toContain('expected a string or an array');
    const role = await postRaw(
      chatUrl,
      JSON.stringify({ ...validChat, messages: [{ role: 'robot', content: 'x' }] }),
    );
    expectOpenAIError(role, 400, { code: 'invalid_value', param: 'messages[0].role' });
    const part = await postRaw(
      chatUrl,
      JSON.stringify({
        ...validChat,
        messages: [{ role: 'user', content: [{ type: 'image_url', image_url: {} }] }],
      }),
    );
    expectOpenAIError(part, 400, {
      code: 'missing_required_parameter',
      param: 'messages[0].content[0].image_url.url',
    });
    for (const response of [asString, decimal, huge, below, stop, role, part])
      expect(['invalid_union', 'too_small', 'too_big', 'custom']).not.toContain(response.json.error?.code);
  });

  it('accepts every field the API defines on messages, as the SDK sends them back', async () => {
    const response = await postRaw(
      chatUrl,
      JSON.stringify({
        ...validChat,
        messages: [
          { role: 'developer', content: [{ type: 'text', text: 'be brief' }] },
          { role: 'user', content: 'hi', name: 'ann' },
          { role: 'assistant', content: 'a b', refusal: null, annotations: [] },
          {
            role: 'assistant',
            content: null,
            tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{}' } }],
          },
          { role: 'tool', tool_call_id: 'c1', content: '42' },
          { role: 'user', content: 'again' },
        ],
        seed: 2 ** 60,
        prompt_cache_key: 'k',
        safety_identifier: 's',
        metadata: { a: 'b' },
        store: false,
        stream_options: null,
      }),
    );
    expect(response.status).toBe(200);
  });

  it('carries what it does not model, and an engine that cannot use it answers a 400 naming it', async () => {
    const extra = await postRaw(
      chatUrl,
      JSON.stringify({ ...validChat, chat_template_kwargs: { thinking: true } }),
    );
    expectOpenAIError(extra, 400, { code: 'unsupported_parameter', param: 'chat_template_kwargs' });
    expect(extra.json.error?.message).toContain("'tiny' (llama-cpp)");
    const image = await postRaw(
      chatUrl,
      JSON.stringify({
        ...validChat,
        messages: [
          { role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AA' } }] },
        ],
      }),
    );
    expectOpenAIError(image, 400, { code: 'unsupported_parameter', param: 'image_url' });
    const streamed = await postRaw(chatUrl, JSON.stringify({ ...validChat, stream: true, verbosity: 'low' }));
    expectOpenAIError(streamed, 400, { code: 'unsupported_parameter', param: 'verbosity' });
  });

  it('accepts parameters set to their defaults', async () => {
    const response = await postRaw(
      chatUrl,
      JSON.stringify({
        ...validChat,
        n: 1,
        logprobs: false,
        tools: [],
        presence_penalty: 0,
        top_logprobs: 0,
      }),
    );
    expect(response.status).toBe(200);
  });

  it('answers an unknown model with 404 model_not_found', async () => {
    const response = await postRaw(chatUrl, JSON.stringify({ ...validChat, model: 'gpt-9' }));
    expectOpenAIError(response, 404, { code: 'model_not_found', param: 'model' });
    const sdkError = await harness.client.chat.completions
      .create({ ...validChat, model: 'gpt-9' } as never)
      .catch((error) => error);
    expect(sdkError.status).toBe(404);
    expect(sdkError.code).toBe('model_not_found');
  });

  it('answers a prompt longer than the context with context_length_exceeded', async () => {
    const long = 'a b c d e f g h '.repeat(40);
    const response = await postRaw(
      chatUrl,
      JSON.stringify({ ...validChat, messages: [{ role: 'user', content: long }] }),
    );
    expectOpenAIError(response, 400, { code: 'context_length_exceeded' });
    expect(response.json.error?.message).toMatch(/maximum context length is 256 tokens/);
    const streaming = await postRaw(
      chatUrl,
      JSON.stringify({ ...validChat, stream: true, messages: [{ role: 'user', content: long }] }),
    );
    expectOpenAIError(streaming, 400, { code: 'context_length_exceeded' });
    const tooMuchCompletion = await postRaw(chatUrl, JSON.stringify({ ...validChat, max_tokens: 1000 }));
    expectOpenAIError(tooMuchCompletion, 400, { code: 'context_length_exceeded' });
  });

  it('answers a body over the limit with 413', async () => {
    const huge = JSON.stringify({
      ...validChat,
      messages: [{ role: 'user', content: 'x'.repeat(100 * 1024) }],
    });
    const response = await postRaw(chatUrl, huge);
    expectOpenAIError(response, 413, { code: 'request_too_large' });
  });

  it('survives pathological input: deep nesting and huge strings', async () => {
    const deep = `{"model":"gravity-tiny","messages":${'['.repeat(20_000)}${']'.repeat(20_000)}}`;
    expectOpenAIError(await postRaw(chatUrl, deep), 400, { param: 'messages[0]' });
    const deepUnknown = `{"model":"gravity-tiny","messages":[],"x":${'{"a":'.repeat(5_000)}1${'}'.repeat(5_000)}}`;
    expectOpenAIError(await postRaw(chatUrl, deepUnknown), 400, { type: 'invalid_request_error' });
    const hugeModel = await postRaw(chatUrl, JSON.stringify({ ...validChat, model: 'm'.repeat(60_000) }));
    expectOpenAIError(hugeModel, 404, { code: 'model_not_found' });
    // The server is still healthy afterwards.
    expect((await postRaw(chatUrl, JSON.stringify(validChat))).status).toBe(200);
  });

  it('answers unknown URLs with a JSON 404, never an HTML page', async () => {
    const response = await fetch(`${harness.url}/v1/nothing-here`);
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ error: { type: 'invalid_request_error' } });
  });

  it('accepts JSON sent with a non-JSON content type (curl -d)', async () => {
    const response = await postRaw(chatUrl, JSON.stringify(validChat), {
      'content-type': 'application/x-www-form-urlencoded',
    });
    expect(response.status).toBe(200);
  });

  it('rejects stream_options without stream', async () => {
    const response = await postRaw(
      chatUrl,
      JSON.stringify({ ...validChat, stream_options: { include_usage: true } }),
    );
    expectOpenAIError(response, 400, { param: 'stream_options' });
  });
});
