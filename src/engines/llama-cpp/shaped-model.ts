// Random-weight GGUF models with the shapes of published models: real engine timings (a GPU's, say)
// for Llama-3.2-1B or Llama-3.1-8B without their weights, which cannot be downloaded here. Every matrix
// has the published dimensions and the published vocabulary size, so each step moves the same bytes and
// does the same arithmetic as the real model; only the values (and so the text) differ.

import {
  elementCount,
  float32ToFloat16Bits,
  type GgufStreamedTensor,
  tensorDataBytes,
  writeGgufFile,
} from './gguf-writer.js';
import {
  buildVocabulary,
  createRandom,
  type LlamaArchitecture,
  llamaGgufMetadata,
  writeThroughTemporaryFile,
} from './tiny-model.js';

export interface PublishedShape extends LlamaArchitecture {
  vocabularySize: number;
  /** The output layer reuses the token embeddings (no `output.weight`). */
  tiedEmbeddings: boolean;
  source: string;
}

export const publishedShapes = {
  'llama-3.2-1b': {
    contextLength: 131072,
    embeddingLength: 2048,
    blockCount: 16,
    feedForwardLength: 8192,
    headCount: 32,
    headCountKv: 8,
    ropeFreqBase: 500000,
    vocabularySize: 128256,
    tiedEmbeddings: true,
    source: 'meta-llama/Llama-3.2-1B config.json (1.24e9 parameters, tie_word_embeddings true)',
  },
  'llama-3.1-8b': {
    contextLength: 131072,
    embeddingLength: 4096,
    blockCount: 32,
    feedForwardLength: 14336,
    headCount: 32,
    headCountKv: 8,
    ropeFreqBase: 500000,
    vocabularySize: 128256,
    tiedEmbeddings: false,
    source: 'meta-llama/Llama-3.1-8B config.json (8.03e9 parameters)',
  },
} as const satisfies Record<string, PublishedShape>;

export type PublishedShapeName = keyof typeof publishedShapes;
export const publishedShapeNames = Object.keys(publishedShapes) as PublishedShapeName[];

/**
 * Random values are drawn once into a pool of this many F16 values per scale and tensors are filled by
 * cycling through it from a random start: drawing 8e9 normals in JavaScript would take minutes, and a
 * matrix's speed does not depend on whether its values repeat.
 */
const poolValues = 1 << 23;

function f16Pool(standardNormals: Float32Array, std: number): Buffer {
  const pool = Buffer.alloc(standardNormals.length * 2);
  for (let i = 0; i < standardNormals.length; i++)
    pool.writeUInt16LE(float32ToFloat16Bits(standardNormals[i]! * std), i * 2);
  return pool;
}

/** `bytes` bytes of the pool, starting at `startValue` and wrapping around. */
function* cycle(pool: Buffer, startValue: number, bytes: number): Iterable<Uint8Array> {
  let offset = (startValue * 2) % pool.length;
  let left = bytes;
  while (left > 0) {
    const take = Math.min(left, pool.length - offset);
    yield pool.subarray(offset, offset + take);
    left -= take;
    offset = 0;
  }
}

/**
 * Writes `path` (through a temporary file, so a reader never sees half a model) and returns its size
 * and parameter count. Scales keep activations near 1 through every layer, as trained models do, so
 * nothing overflows F16 on the way: embeddings N(0, 1), projections N(0, 1/fan-in). The rows of
 * special and byte tokens in the output layer are zero, so greedy decoding never ends a generation
 * early nor emits a partial character: benchmarks get exactly the tokens they ask for.
 */
export async function writeShapedModel(
  shapeOrName: PublishedShapeName | PublishedShape,
  path: string,
  options: { seed?: number } = {},
): Promise<{ bytes: number; parameters: number }> {
  const shape: PublishedShape = typeof shapeOrName === 'string' ? publishedShapes[shapeOrName] : shapeOrName;
  const name = `gravity-shaped-${typeof shapeOrName === 'string' ? shapeOrName : 'custom'}`;
  const vocabulary = buildVocabulary(shape.vocabularySize);
  const random = createRandom(options.seed ?? 0x5eed_5a9e);
  // No tensor is larger than the vocabulary or the FFN matrices: a smaller shape needs a smaller pool.
  const largestTensor = shape.embeddingLength * Math.max(shape.vocabularySize, shape.feedForwardLength);
  const normals = new Float32Array(Math.min(poolValues, largestTensor));
  for (let i = 0; i < normals.length; i++) normals[i] = random.normal();
  const pools = new Map<number, Buffer>();
  const poolFor = (std: number): Buffer => {
    let pool = pools.get(std);
    if (!pool) {
      pool = f16Pool(normals, std);
      pools.set(std, pool);
    }
    return pool;
  };
  const startValue = (): number => Math.floor(random.uniform() * normals.length);

  const width = shape.embeddingLength;
  const kvWidth = (shape.headCountKv * width) / shape.headCount;
  const ones = (name: string, length: number): GgufStreamedTensor => ({
    name,
    dims: [length],
    type: 'f32',
    chunks: () => [new Uint8Array(new Float32Array(length).fill(1).buffer)],
  });
  const matrix = (name: string, dims: [number, number], std: number): GgufStreamedTensor => {
    const layout = { name, dims, type: 'f16' as const };
    const start = startValue();
    return { ...layout, chunks: () => cycle(poolFor(std), start, tensorDataBytes(layout)) };
  };
  // Token rows in ggml order: row t holds elements [t·width, (t+1)·width).
  const vocabularyMatrix = (name: string, std: number): GgufStreamedTensor => {
    const layout = { name, dims: [width, shape.vocabularySize], type: 'f16' as const };
    const zeroBytes = vocabulary.firstTextToken * width * 2;
    const start = startValue();
    return {
      ...layout,
      chunks: function* () {
        yield new Uint8Array(zeroBytes);
        yield* cycle(poolFor(std), start, tensorDataBytes(layout) - zeroBytes);
      },
    };
  };

  const tensors: GgufStreamedTensor[] = [vocabularyMatrix('token_embd.weight', 1)];
  for (let block = 0; block < shape.blockCount; block++) {
    const prefix = `blk.${block}`;
    const fromResidual = 1 / Math.sqrt(width);
    tensors.push(
      ones(`${prefix}.attn_norm.weight`, width),
      matrix(`${prefix}.attn_q.weight`, [width, width], fromResidual),
      matrix(`${prefix}.attn_k.weight`, [width, kvWidth], fromResidual),
      matrix(`${prefix}.attn_v.weight`, [width, kvWidth], fromResidual),
      matrix(`${prefix}.attn_output.weight`, [width, width], fromResidual),
      ones(`${prefix}.ffn_norm.weight`, width),
      matrix(`${prefix}.ffn_gate.weight`, [width, shape.feedForwardLength], fromResidual),
      matrix(`${prefix}.ffn_up.weight`, [width, shape.feedForwardLength], fromResidual),
      matrix(
        `${prefix}.ffn_down.weight`,
        [shape.feedForwardLength, width],
        1 / Math.sqrt(shape.feedForwardLength),
      ),
    );
  }
  tensors.push(ones('output_norm.weight', width));
  // The output layer sees a unit-RMS vector: a scale of 0.1 spreads logits by ~0.1·√width (≥ 4.5), so
  // greedy choices have clear margins over the zero-logit specials.
  if (!shape.tiedEmbeddings) tensors.push(vocabularyMatrix('output.weight', 0.1));

  const metadata = llamaGgufMetadata({ name, fileType: 1, shape, vocabulary });
  const parameters = tensors.reduce((sum, tensor) => sum + elementCount(tensor.dims), 0);
  const bytes = await writeThroughTemporaryFile(path, (temporaryPath) =>
    writeGgufFile(temporaryPath, metadata, tensors),
  );
  return { bytes, parameters };
}
