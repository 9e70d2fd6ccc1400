import { endianness } from 'node:os';
import type { RequestContext } from '../core/request-context.js';
import type { ContentPart, EmbeddingVector, FinishPart } from '../core/stream-parts.js';
import { usageObject } from './openai-wire-format.js';
import type { ParsedRequest } from './request-schemas.js';

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
  private sorted = false;

  constructor(private readonly encodingFormat: 'float' | 'base64') {}

  /** The assembler of an embeddings request's answer, in the `encoding_format` it asked for. */
  static forRequest(request: ParsedRequest): EmbeddingsAssembler {
    const input = request.generation.input;
    return new EmbeddingsAssembler(input.kind === 'embedding' ? input.encodingFormat : 'float');
  }

  add(part: ContentPart): void {
    if (part.type === 'embeddings') for (const vector of part.data) this.data.push(vector);
  }

  /**
   * The response as an object (a batch line's body, which the batch file writes as one line). After the
   * ledger commit: `context.metered` holds the figures `usage.gravity` carries.
   */
  body(part: FinishPart, context: RequestContext) {
    const { encodingFormat } = this;
    return {
      object: 'list',
      data: this.ordered().map((vector) => ({
        object: 'embedding',
        index: vector.index,
        embedding:
          encodingFormat === 'base64' ? base64Vector(vector.embedding) : floatVector(vector.embedding),
      })),
      ...tailFields(part, context),
    };
  }

  /**
   * The same response as JSON text in pieces, for an HTTP body written piece by piece: 2048 inputs of
   * 4096 dimensions are about 180 MB of JSON, which one `JSON.stringify` would build in a second or more
   * with the event loop blocked. Each piece holds whole vectors and ends once it holds
   * `valuesPerPiece` numbers or more; the text equals `JSON.stringify(body(part, context))`.
   */
  *jsonPieces(
    part: FinishPart,
    context: RequestContext,
    valuesPerPiece = defaultValuesPerPiece,
  ): Generator<string> {
    const base64 = this.encodingFormat === 'base64';
    yield '{"object":"list","data":[';
    let piece = '';
    let values = 0;
    for (const [position, vector] of this.ordered().entries()) {
      const embedding = base64
        ? JSON.stringify(base64Vector(vector.embedding))
        : floatVectorJson(vector.embedding);
      piece += `${position === 0 ? '' : ','}{"object":"embedding","index":${vector.index},"embedding":${embedding}}`;
      values += vectorLength(vector.embedding);
      if (values >= valuesPerPiece) {
        yield piece;
        piece = '';
        values = 0;
      }
    }
    const tail = JSON.stringify(tailFields(part, context));
    // The tail object's opening brace gives way to the list's closing bracket and a comma.
    yield `${piece}],${tail.slice(1)}`;
  }

  /** The vectors in input order; engines may send them in any order. Sorts in place, once. */
  private ordered(): EmbeddingVector[] {
    if (!this.sorted) this.data.sort((a, b) => a.index - b.index);
    this.sorted = true;
    return this.data;
  }
}

/** About 1.3 MB of JSON floats: small enough to encode in a few milliseconds between turns of the loop. */
const defaultValuesPerPiece = 65_536;

function tailFields(part: FinishPart, context: RequestContext) {
  const { usage } = part;
  const { gravity } = usageObject(usage, context.metered);
  return {
    model: context.model,
    usage: {
      prompt_tokens: usage.promptTokens,
      total_tokens: usage.promptTokens,
      ...(gravity ? { gravity } : {}),
    },
  };
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

/**
 * A vector as JSON numbers, written without building an array first. Each value is the float32 read as
 * a double and written as `JSON.stringify` writes that double (its shortest round-trip text, which is
 * `String(value)`; NaN and the infinities, which JSON cannot hold, become `null`), so clients see the
 * same numbers as from `floatVector`.
 */
export function floatVectorJson(embedding: EmbeddingVector['embedding']): string {
  if (typeof embedding === 'string') return JSON.stringify(floatVector(embedding));
  const length = embedding.length;
  if (length === 0) return '[]';
  let text = '[';
  for (let index = 0; index < length; index++) {
    const value = embedding[index] as number;
    text += index === 0 ? '' : ',';
    text += Number.isFinite(value) ? String(value) : 'null';
  }
  return `${text}]`;
}

function vectorLength(embedding: EmbeddingVector['embedding']): number {
  // A base64 string holds 4 bytes per value in 4/3 as many characters.
  return typeof embedding === 'string' ? Math.floor((embedding.length * 3) / 16) : embedding.length;
}
