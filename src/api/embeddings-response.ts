import { endianness } from 'node:os';
import type { MeteredFigures, RequestContext } from '../core/request-context.js';
import type { ContentPart, EmbeddingVector, TokenUsage } from '../core/stream-parts.js';
import { usageObject } from './openai-wire-format.js';

/**
 * OpenAI's embeddings response, `{object: 'list', data: [{object: 'embedding', index, embedding}],
 * model, usage: {prompt_tokens, total_tokens}}`, built from an engine's `embeddings` parts. Usage
 * carries Gravity's metered figures under `gravity`, as completions' usage does.
 *
 * `encoding_format: base64` is OpenAI's: the vector's float32 values, little-endian, base64-encoded (the
 * openai SDK asks for it by default and decodes it). A vector an upstream already sent as base64 goes
 * out as the upstream wrote it; one it sent as numbers is encoded here, and a base64 vector a client
 * asked to get as numbers is decoded.
 */
export class EmbeddingsAssembler {
  private readonly data: EmbeddingVector[] = [];

  add(part: ContentPart): void {
    if (part.type === 'embeddings') for (const vector of part.data) this.data.push(vector);
  }

  build(options: {
    context: RequestContext;
    usage: TokenUsage;
    metered: MeteredFigures | null;
    encodingFormat: 'float' | 'base64';
  }) {
    const { context, usage, metered, encodingFormat } = options;
    const { gravity } = usageObject(usage, metered);
    return {
      object: 'list',
      data: [...this.data]
        .sort((a, b) => a.index - b.index)
        .map((vector) => ({
          object: 'embedding',
          index: vector.index,
          embedding:
            encodingFormat === 'base64' ? base64Vector(vector.embedding) : floatVector(vector.embedding),
        })),
      model: context.model,
      usage: {
        prompt_tokens: usage.promptTokens,
        total_tokens: usage.promptTokens,
        ...(gravity ? { gravity } : {}),
      },
    };
  }
}

const littleEndianHost = endianness() === 'LE';

/** A vector as OpenAI's base64: little-endian float32 bytes. */
export function base64Vector(embedding: EmbeddingVector['embedding']): string {
  if (typeof embedding === 'string') return embedding;
  const values = embedding instanceof Float32Array ? embedding : Float32Array.from(embedding);
  if (littleEndianHost)
    return Buffer.from(values.buffer, values.byteOffset, values.byteLength).toString('base64');
  const bytes = Buffer.alloc(values.length * 4);
  for (let index = 0; index < values.length; index++) bytes.writeFloatLE(values[index] as number, index * 4);
  return bytes.toString('base64');
}

/** A vector as a JSON array of numbers. */
export function floatVector(embedding: EmbeddingVector['embedding']): number[] {
  if (typeof embedding !== 'string') return Array.from(embedding);
  const bytes = Buffer.from(embedding, 'base64');
  const values: number[] = new Array(Math.floor(bytes.length / 4));
  for (let index = 0; index < values.length; index++) values[index] = bytes.readFloatLE(index * 4);
  return values;
}
