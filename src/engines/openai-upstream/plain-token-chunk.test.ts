import { describe, expect, it } from 'vitest';
import { isPlainTokenChunk } from './openai-upstream-engine.js';

const head = '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m",';
const chunk = (choices: string, tail = '') => `${head}"choices":[${choices}]${tail}}`;

describe('isPlainTokenChunk', () => {
  it('recognises one unfinished choice with text, whatever the text says', () => {
    expect(
      isPlainTokenChunk(chunk('{"index":0,"delta":{"content":" a"},"logprobs":null,"finish_reason":null}')),
    ).toBe(true);
    expect(
      isPlainTokenChunk(
        chunk('{"index":0,"text":"x","logprobs":null,"finish_reason":null,"stop_reason":null}'),
      ),
    ).toBe(true);
    expect(
      isPlainTokenChunk(
        chunk('{"index":0,"delta":{"reasoning_content":"hm"},"finish_reason":null}', ',"usage":null'),
      ),
    ).toBe(true);
    // Quotes inside content are escaped, so content cannot look like a key.
    const sneaky = JSON.stringify('"finish_reason":"stop","usage":{"x":1},"error":{}');
    expect(isPlainTokenChunk(chunk(`{"index":0,"delta":{"content":${sneaky}},"finish_reason":null}`))).toBe(
      true,
    );
  });

  it('leaves to the parser whatever it is not sure of', () => {
    // The role-only opener: no text.
    expect(
      isPlainTokenChunk(chunk('{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}')),
    ).toBe(false);
    expect(isPlainTokenChunk(chunk('{"index":0,"delta":{"content":"a"},"finish_reason":"stop"}'))).toBe(
      false,
    );
    expect(
      isPlainTokenChunk(
        chunk('{"index":0,"delta":{"content":"a"},"finish_reason":null}', ',"usage":{"prompt_tokens":1}'),
      ),
    ).toBe(false);
    expect(isPlainTokenChunk(chunk('{"index":0,"delta":{"content":"a"},"finish_reason": null}'))).toBe(false);
    expect(
      isPlainTokenChunk(
        chunk(
          '{"index":0,"delta":{"content":"a"},"finish_reason":null},{"index":1,"delta":{"content":"b"},"finish_reason":null}',
        ),
      ),
    ).toBe(false);
    expect(
      isPlainTokenChunk(
        chunk(
          '{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{"}}]},"finish_reason":null}',
        ),
      ),
    ).toBe(false);
    expect(isPlainTokenChunk('{"error":{"message":"boom"}}')).toBe(false);
  });
});
