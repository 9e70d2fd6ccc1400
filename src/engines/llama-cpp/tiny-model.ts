// Gravity generates its own tiny llama-architecture GGUF models so tests and benchmarks can run
// llama.cpp end to end on machines that cannot download weights.

import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { elementCount, encodeGguf, type GgufMetadataEntry, type GgufTensor } from './gguf-writer.js';

/**
 * 'alphabet': greedy decoding continues ' a b c …' word by word and emits EOS after ' z'.
 * 'random': seeded random weights whose output depends on the whole context; greedy decoding never
 *   picks EOS (or any special or byte token), so generations run as long as asked.
 */
export type TinyModelKind = 'alphabet' | 'random';

export const tinyModelIds: Record<TinyModelKind, string> = {
  alphabet: 'gravity-tiny',
  random: 'gravity-tiny-random',
};

// Bump whenever the bytes buildTinyModel produces change, so stale files on disk are replaced.
export const tinyModelGeneratorVersion = 1;

const embeddingLength = 64;
const blockCount = 2;
const headCount = 4;
const headCountKv = 2;
const headDimension = embeddingLength / headCount;
const kvWidth = headCountKv * headDimension;
const feedForwardLength = 128;

const tokenTypes = { normal: 1, unknown: 2, control: 3, byte: 6 } as const;

export const tinyTokenIds = { unknown: 0, bos: 1, eos: 2 } as const;

export interface Vocabulary {
  tokens: string[];
  scores: number[];
  types: number[];
  /** Token id of '▁a' … '▁z', in alphabet order. */
  letterWordIds: number[];
  /** The first token that is text (not a special or byte token): every id from here on is a word or character. */
  firstTextToken: number;
}

const spaceMarker = '\u2581';

/**
 * An SPM vocabulary: the specials, all 256 byte tokens, '▁', printable ASCII and '▁a' … '▁z'; with
 * `size`, filled up to it with longer lowercase words ('▁aa', '▁ab', …, then three letters, …), each
 * one token, so a published model's vocabulary size (and its output layer's cost) can be matched.
 */
export function buildVocabulary(size?: number): Vocabulary {
  const tokens: string[] = [];
  const scores: number[] = [];
  const types: number[] = [];
  const add = (piece: string, score: number, type: number): number => {
    tokens.push(piece);
    scores.push(score);
    types.push(type);
    return tokens.length - 1;
  };

  add('<unk>', 0, tokenTypes.unknown);
  add('<s>', 0, tokenTypes.control);
  add('</s>', 0, tokenTypes.control);
  // llama.cpp refuses an SPM vocabulary that lacks any of the 256 byte-fallback tokens.
  for (let byte = 0; byte < 256; byte++) {
    add(`<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`, 0, tokenTypes.byte);
  }
  // Single characters score below the words so the SPM merge always prefers '▁a' over '▁' + 'a'.
  const firstTextToken = add(spaceMarker, -tokens.length, tokenTypes.normal);
  for (let code = 0x21; code <= 0x7e; code++)
    add(String.fromCharCode(code), -tokens.length, tokenTypes.normal);
  const letterWordIds: number[] = [];
  for (let letter = 0; letter < 26; letter++) {
    letterWordIds.push(add(spaceMarker + String.fromCharCode(0x61 + letter), 0, tokenTypes.normal));
  }
  if (size !== undefined) {
    if (size < tokens.length) throw new Error(`a vocabulary needs at least ${tokens.length} tokens`);
    for (let letters = 2; tokens.length < size; letters++) {
      const combinations = 26 ** letters;
      for (let index = 0; index < combinations && tokens.length < size; index++) {
        let word = '';
        for (let rest = index, place = 0; place < letters; place++, rest = Math.floor(rest / 26))
          word = String.fromCharCode(0x61 + (rest % 26)) + word;
        add(spaceMarker + word, 0, tokenTypes.normal);
      }
    }
  }
  return { tokens, scores, types, letterWordIds, firstTextToken };
}

/** xorshift32: tiny, fast and fully reproducible across platforms. */
export function createRandom(seed: number): { uniform: () => number; normal: () => number } {
  let state = seed >>> 0 || 1;
  const next = (): number => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state;
  };
  // Strictly inside (0, 1) so the Box-Muller logarithm stays finite.
  const uniform = (): number => (next() + 0.5) / 0x1_0000_0000;
  const normal = (): number => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  return { uniform, normal };
}

type Random = ReturnType<typeof createRandom>;

function tensor(name: string, dims: number[], fill: (data: Float32Array) => void): GgufTensor {
  const data = new Float32Array(elementCount(dims));
  fill(data);
  return { name, dims, type: 'f32', data };
}

const ones = (data: Float32Array): void => {
  data.fill(1);
};
const zeros = (): void => {};
const gaussian =
  (random: Random, std: number) =>
  (data: Float32Array): void => {
    for (let i = 0; i < data.length; i++) data[i] = random.normal() * std;
  };

interface WeightPlan {
  embedding: (data: Float32Array) => void;
  attention: (fanIn: number) => (data: Float32Array) => void;
  attentionOutput: (data: Float32Array) => void;
  feedForward: (fanIn: number) => (data: Float32Array) => void;
  feedForwardDown: (data: Float32Array) => void;
  output: (data: Float32Array) => void;
}

// Residual stream equals the token embedding (attention and FFN outputs are zero), so the next
// token is a pure function of the current one: each letter word owns dims 0..25, everything else
// shares dim 26, and output row j reads the dim of the token that must precede j.
function alphabetPlan(vocabulary: Vocabulary, random: Random): WeightPlan {
  const otherDim = 26;
  // RMS norm maps a one-hot to ~sqrt(64) = 8 on its dim, so 2 gives the right token a logit of ~16
  // against 0 for all others: even temperature-1 sampling picks it with probability ≈ 1 - 4e-5.
  const outputScale = 2;
  const dimOf = new Map<number, number>(vocabulary.letterWordIds.map((id, letter) => [id, letter]));
  const [firstLetter] = vocabulary.letterWordIds;
  return {
    embedding: (data) => {
      for (let token = 0; token < vocabulary.tokens.length; token++) {
        data[token * embeddingLength + (dimOf.get(token) ?? otherDim)] = 1;
      }
    },
    // Their products are multiplied into zeroed outputs, so any values work; small random ones
    // keep the computation realistic.
    attention: () => gaussian(random, 0.02),
    attentionOutput: zeros,
    feedForward: () => gaussian(random, 0.02),
    feedForwardDown: zeros,
    output: (data) => {
      const predict = (target: number, fromDim: number): void => {
        data[target * embeddingLength + fromDim] = outputScale;
      };
      predict(firstLetter!, otherDim);
      vocabulary.letterWordIds.forEach((id, letter) => {
        predict(vocabulary.letterWordIds[letter + 1] ?? tinyTokenIds.eos, dimOf.get(id)!);
      });
    },
  };
}

// Scales are chosen so the attention output is as large as the embedding (the next token depends on
// earlier tokens, not just the last one) and logits spread widely (greedy choices have clear margins).
function randomPlan(vocabulary: Vocabulary, random: Random): WeightPlan {
  const outputStd = 0.5;
  const { firstTextToken } = vocabulary;
  return {
    embedding: gaussian(random, 1),
    attention: (fanIn) => gaussian(random, 1 / Math.sqrt(fanIn)),
    attentionOutput: gaussian(random, 2 / Math.sqrt(embeddingLength)),
    feedForward: (fanIn) => gaussian(random, 1 / Math.sqrt(fanIn)),
    feedForwardDown: gaussian(random, 1 / Math.sqrt(feedForwardLength)),
    output: (data) => {
      gaussian(random, outputStd)(data);
      // Specials and byte tokens get logit exactly 0 while the best of the ~120 random logits
      // (std ≈ 8 · 0.5) sits near +10: greedy decoding never ends a benchmark early, and the text stays
      // printable ASCII, one whole character or word per token (no split UTF-8 in streams).
      data.fill(0, 0, firstTextToken * embeddingLength);
    },
  };
}

/** The architecture hyperparameters a llama GGUF declares. */
export interface LlamaArchitecture {
  contextLength: number;
  embeddingLength: number;
  blockCount: number;
  feedForwardLength: number;
  headCount: number;
  headCountKv: number;
  ropeFreqBase: number;
}

/** The metadata llama.cpp needs to load a llama-architecture model with Gravity's SPM vocabulary. */
export function llamaGgufMetadata(options: {
  name: string;
  /** llama.cpp's `general.file_type`: 0 all F32, 1 mostly F16. */
  fileType: number;
  shape: LlamaArchitecture;
  vocabulary: Vocabulary;
}): GgufMetadataEntry[] {
  const { shape, vocabulary } = options;
  const u32 = (key: string, value: number): GgufMetadataEntry => ({ key, value: { type: 'u32', value } });
  return [
    { key: 'general.architecture', value: { type: 'string', value: 'llama' } },
    { key: 'general.name', value: { type: 'string', value: options.name } },
    u32('general.file_type', options.fileType),
    u32('gravity.generator_version', tinyModelGeneratorVersion),
    u32('llama.context_length', shape.contextLength),
    u32('llama.embedding_length', shape.embeddingLength),
    u32('llama.block_count', shape.blockCount),
    u32('llama.feed_forward_length', shape.feedForwardLength),
    u32('llama.attention.head_count', shape.headCount),
    u32('llama.attention.head_count_kv', shape.headCountKv),
    u32('llama.rope.dimension_count', shape.embeddingLength / shape.headCount),
    { key: 'llama.rope.freq_base', value: { type: 'f32', value: shape.ropeFreqBase } },
    { key: 'llama.attention.layer_norm_rms_epsilon', value: { type: 'f32', value: 1e-5 } },
    u32('llama.vocab_size', vocabulary.tokens.length),
    { key: 'tokenizer.ggml.model', value: { type: 'string', value: 'llama' } },
    { key: 'tokenizer.ggml.tokens', value: { type: 'array', itemType: 'string', values: vocabulary.tokens } },
    { key: 'tokenizer.ggml.scores', value: { type: 'array', itemType: 'f32', values: vocabulary.scores } },
    { key: 'tokenizer.ggml.token_type', value: { type: 'array', itemType: 'i32', values: vocabulary.types } },
    u32('tokenizer.ggml.bos_token_id', tinyTokenIds.bos),
    u32('tokenizer.ggml.eos_token_id', tinyTokenIds.eos),
    u32('tokenizer.ggml.unknown_token_id', tinyTokenIds.unknown),
    { key: 'tokenizer.ggml.add_bos_token', value: { type: 'bool', value: true } },
    { key: 'tokenizer.ggml.add_eos_token', value: { type: 'bool', value: false } },
  ];
}

const seeds: Record<TinyModelKind, number> = { alphabet: 0x5eed_a1fa, random: 0x5eed_4a4d };

export function buildTinyModel(kind: TinyModelKind): Buffer {
  const vocabulary = buildVocabulary();
  const vocabSize = vocabulary.tokens.length;
  const random = createRandom(seeds[kind]);
  const plan = kind === 'alphabet' ? alphabetPlan(vocabulary, random) : randomPlan(vocabulary, random);

  const tensors: GgufTensor[] = [tensor('token_embd.weight', [embeddingLength, vocabSize], plan.embedding)];
  for (let block = 0; block < blockCount; block++) {
    const prefix = `blk.${block}`;
    tensors.push(
      tensor(`${prefix}.attn_norm.weight`, [embeddingLength], ones),
      tensor(`${prefix}.attn_q.weight`, [embeddingLength, embeddingLength], plan.attention(embeddingLength)),
      tensor(`${prefix}.attn_k.weight`, [embeddingLength, kvWidth], plan.attention(embeddingLength)),
      tensor(`${prefix}.attn_v.weight`, [embeddingLength, kvWidth], plan.attention(embeddingLength)),
      tensor(`${prefix}.attn_output.weight`, [embeddingLength, embeddingLength], plan.attentionOutput),
      tensor(`${prefix}.ffn_norm.weight`, [embeddingLength], ones),
      tensor(
        `${prefix}.ffn_gate.weight`,
        [embeddingLength, feedForwardLength],
        plan.feedForward(embeddingLength),
      ),
      tensor(
        `${prefix}.ffn_up.weight`,
        [embeddingLength, feedForwardLength],
        plan.feedForward(embeddingLength),
      ),
      tensor(`${prefix}.ffn_down.weight`, [feedForwardLength, embeddingLength], plan.feedForwardDown),
    );
  }
  tensors.push(
    tensor('output_norm.weight', [embeddingLength], ones),
    tensor('output.weight', [embeddingLength, vocabSize], plan.output),
  );

  const metadata = llamaGgufMetadata({
    name: tinyModelIds[kind],
    fileType: 0,
    shape: {
      contextLength: 4096,
      embeddingLength,
      blockCount,
      feedForwardLength,
      headCount,
      headCountKv,
      ropeFreqBase: 10000,
    },
    vocabulary,
  });
  return encodeGguf({ metadata, tensors });
}

/**
 * Writes `<directory>/<id>.gguf` unless an identical file is already there, and returns its path.
 * Writes go through a temp file and a rename so concurrent processes never load a partial model.
 */
export async function ensureTinyModel(kind: TinyModelKind, directory: string): Promise<string> {
  const path = join(directory, `${tinyModelIds[kind]}.gguf`);
  const expected = buildTinyModel(kind);
  // A full comparison costs ~1 ms at this size and also catches hand-edited or truncated files.
  const existing = await readFile(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (existing?.equals(expected)) return path;

  await mkdir(directory, { recursive: true });
  await writeThroughTemporaryFile(path, (temporaryPath) => writeFile(temporaryPath, expected));
  return path;
}

/**
 * Runs `write` on a temporary file beside `path`, then renames it into place (removing it on failure):
 * a process loading `path` meanwhile sees the old file or the whole new one, never part of one.
 */
export async function writeThroughTemporaryFile<T>(
  path: string,
  write: (temporaryPath: string) => Promise<T>,
): Promise<T> {
  const temporaryPath = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    const result = await write(temporaryPath);
    await rename(temporaryPath, path);
    return result;
  } catch (error) {
    await rm(temporaryPath, { force: true });
    throw error;
  }
}
