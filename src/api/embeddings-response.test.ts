import { describe, expect, it } from 'vitest';
import { createRequestContext } from '../core/request-context.js';
import { base64Vector, EmbeddingsAssembler, floatVector } from './embeddings-response.js';

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
    const assembler = new EmbeddingsAssembler();
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
    const body = assembler.build({
      context,
      usage: { promptTokens: 5, cachedPromptTokens: 0, completionTokens: 0, source: 'engine' },
      metered: null,
      encodingFormat: 'float',
    });
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
});
