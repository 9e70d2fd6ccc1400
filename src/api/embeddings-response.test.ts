import { describe, expect, it } from 'vitest';
import { createRequestContext } from '../core/request-context.js';
import { base64Vector, EmbeddingsAssembler, floatVector, floatVectorJson } from './embeddings-response.js';

describe('embedding vectors on the wire', () => {
  it('writes base64 as little-endian float32 bytes, as OpenAI does', () => {
    const encoded = base64Vector(new Float32Array([1, -2.5, 0.125]));
    const bytes = Buffer.from(encoded, 'base64');
    expect(bytes.length).toBe(12);
    expect([bytes.readFloatLE(0), bytes.readFloatLE(4), bytes.readFloatLE(8)]).toEqual([1, -2.5, 0.125]);
    // Numbers from an upstream encode the same way; a base64 string from an upstream stays as sent.
    expect(base64Vector([1, -2.5, 0.125])).toBe(encoded);
    expect(base64Vector('AACAPw==')).toBe('AACAPw==');
  });

  it('decodes a relayed base64 vector for a client that asked for floats', () => {
    expect(floatVector(base64Vector([0.5, -1]))).toEqual([0.5, -1]);
    expect(floatVector(new Float32Array([0.25]))).toEqual([0.25]);
  });

  it('builds the list in input order with usage counting prompt tokens only', () => {
    const assembler = new EmbeddingsAssembler('float');
    assembler.add({ type: 'embeddings', data: [{ index: 1, embedding: [0, 1] }], tokens: 0 });
    assembler.add({ type: 'embeddings', data: [{ index: 0, embedding: [1, 0] }], tokens: 0 });
    const context = createRequestContext({
      endpoint: 'embeddings',
      stream: false,
      model: 'm',
      serviceTier: 'auto',
      nowMs: 0,
      epochMs: 0,
    });
    const body = assembler.body(
      {
        type: 'finish',
        finishReason: 'stop',
        usage: { promptTokens: 5, cachedPromptTokens: 0, completionTokens: 0, source: 'engine' },
      },
      context,
    );
    expect(body).toEqual({
      object: 'list',
      data: [
        { object: 'embedding', index: 0, embedding: [1, 0] },
        { object: 'embedding', index: 1, embedding: [0, 1] },
      ],
      model: 'm',
      usage: { prompt_tokens: 5, total_tokens: 5 },
    });
  });

  it('writes float32 values as the same JSON numbers JSON.stringify gives for them', () => {
    const values = new Float32Array(2000);
    for (let index = 0; index < values.length; index++)
      values[index] = ((Math.sin(index * 12.9898) * 43758.5453) % 1) / (index % 7 === 0 ? 1e-30 : 1);
    values.set([0, -0, 1, -1, 1e-45, 3.4028234663852886e38, 0.1, Number.NaN, Number.POSITIVE_INFINITY], 0);
    expect(floatVectorJson(values)).toBe(JSON.stringify(Array.from(values)));
    expect(floatVectorJson([0.1, -2.5])).toBe('[0.1,-2.5]');
    expect(floatVectorJson(base64Vector([0.1, -2.5]))).toBe(
      JSON.stringify(floatVector(base64Vector([0.1, -2.5]))),
    );
    expect(floatVectorJson(new Float32Array(0))).toBe('[]');
  });

  it('writes the body in bounded pieces whose text is the JSON of the whole list', () => {
    const context = createRequestContext({
      endpoint: 'embeddings',
      stream: false,
      model: 'm',
      serviceTier: 'auto',
      nowMs: 0,
      epochMs: 0,
    });
    const finish = {
      type: 'finish',
      finishReason: 'stop',
      usage: { promptTokens: 30, cachedPromptTokens: 0, completionTokens: 0, source: 'engine' },
    } as const;
    for (const encodingFormat of ['float', 'base64'] as const) {
      const assembler = new EmbeddingsAssembler(encodingFormat);
      for (let index = 9; index >= 0; index--) {
        const vector = Float32Array.from({ length: 100 }, (_, value) => Math.fround((index + value) / 7));
        assembler.add({ type: 'embeddings', data: [{ index, embedding: vector }], tokens: 0 });
      }
      const pieces = [...assembler.jsonPieces(finish, context, 300)];
      // The opener, three pieces of three vectors, and the last vector with the tail.
      expect(pieces).toHaveLength(5);
      expect(pieces.join('')).toBe(JSON.stringify(assembler.body(finish, context)));
      expect(JSON.parse(pieces.join('')).data.map((item: { index: number }) => item.index)).toEqual([
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
      ]);
    }
  });
});
