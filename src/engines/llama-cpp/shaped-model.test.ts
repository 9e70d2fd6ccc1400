import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getLlama, LlamaCompletion, LlamaLogLevel } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { modelProfileFromGguf } from '../../performance-model/model-profiles.js';
import {
  encodeGguf,
  type GgufTensor,
  readGgufHeader,
  tensorDataBytes,
  writeGgufFile,
} from './gguf-writer.js';
import { type PublishedShape, publishedShapes, writeShapedModel } from './shaped-model.js';
import { buildVocabulary } from './tiny-model.js';

let directory: string;
beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'gravity-shaped-'));
});
afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
});

describe('streamed GGUF files', () => {
  it('writes the same bytes as the in-memory encoder, a chunk at a time', async () => {
    const tensors: GgufTensor[] = [
      { name: 'odd', dims: [3], type: 'f32', data: new Float32Array([1, 2, 3]) },
      { name: 'half', dims: [2, 3], type: 'f16', data: new Float32Array([1, -2, 65504, 0.1, 1e-8, 7]) },
    ];
    const metadata = [{ key: 'general.name', value: { type: 'string' as const, value: 'streamed' } }];
    const inMemory = encodeGguf({ metadata, tensors });
    const header = readGgufHeader(inMemory);
    const path = join(directory, 'streamed.gguf');
    const streamed = tensors.map((tensor, index) => {
      const start = header.dataOffsetBytes + header.tensors[index]!.offsetBytes;
      const bytes = inMemory.subarray(start, start + tensorDataBytes(tensor));
      // Split unevenly: the writer must not care where chunks end.
      return { ...tensor, chunks: () => [bytes.subarray(0, 1), bytes.subarray(1)] };
    });
    await writeGgufFile(path, metadata, streamed);
    expect((await readFile(path)).equals(inMemory)).toBe(true);
  });

  it('refuses a tensor whose chunks do not add up to its size', async () => {
    await expect(
      writeGgufFile(
        join(directory, 'short.gguf'),
        [],
        [{ name: 'short', dims: [4], type: 'f32', chunks: () => [new Uint8Array(12)] }],
      ),
    ).rejects.toThrow(/short: wrote 12 bytes, needs 16/);
  });
});

describe('published-shape models', () => {
  it('builds a vocabulary of the published size, every piece distinct', () => {
    const vocabulary = buildVocabulary(publishedShapes['llama-3.1-8b'].vocabularySize);
    expect(vocabulary.tokens).toHaveLength(128256);
    expect(new Set(vocabulary.tokens).size).toBe(128256);
    // Specials and all 256 byte tokens come first; everything after is text.
    expect(vocabulary.firstTextToken).toBe(259);
    expect(vocabulary.tokens[vocabulary.firstTextToken]).toBe('\u2581');
  });

  it('declares the published parameter counts', () => {
    const parameters = (shape: PublishedShape): number => {
      const kvWidth = (shape.headCountKv * shape.embeddingLength) / shape.headCount;
      const block =
        2 * shape.embeddingLength * shape.embeddingLength +
        2 * shape.embeddingLength * kvWidth +
        3 * shape.embeddingLength * shape.feedForwardLength +
        2 * shape.embeddingLength;
      return (
        shape.blockCount * block +
        shape.embeddingLength * shape.vocabularySize * (shape.tiedEmbeddings ? 1 : 2) +
        shape.embeddingLength
      );
    };
    // meta-llama's model cards: 1.24B and 8.03B.
    expect(parameters(publishedShapes['llama-3.2-1b']) / 1e9).toBeCloseTo(1.24, 2);
    expect(parameters(publishedShapes['llama-3.1-8b']) / 1e9).toBeCloseTo(8.03, 2);
  });

  // The same writer at a size a test can load: llama.cpp accepts the file, the model's shape reads back,
  // and greedy decoding gives exactly the tokens asked for, all of them words.
  const smallShape: PublishedShape = {
    contextLength: 2048,
    embeddingLength: 128,
    blockCount: 2,
    feedForwardLength: 256,
    headCount: 4,
    headCountKv: 2,
    ropeFreqBase: 500000,
    vocabularySize: 4096,
    tiedEmbeddings: false,
    source: 'a test shape',
  };

  it('writes a model llama.cpp loads, whose greedy output is words only and runs as long as asked', async () => {
    const path = join(directory, 'small.gguf');
    const { parameters } = await writeShapedModel(smallShape, path);
    const profile = await modelProfileFromGguf(path);
    expect(profile).toMatchObject({ parameters, layers: 2, hiddenSize: 128, attentionHeads: 4, kvHeads: 2 });
    // F16 matrices, F32 norms.
    expect(profile.weightBytes).toBeGreaterThanOrEqual(2 * (parameters - 5 * 128));

    const llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
    const model = await llama.loadModel({ modelPath: path });
    try {
      const context = await model.createContext({ contextSize: 256, threads: 1 });
      const completion = new LlamaCompletion({ contextSequence: context.getSequence() });
      const vocabulary = buildVocabulary(smallShape.vocabularySize);
      const generated: number[] = [];
      await completion.generateCompletion('ab cd ef gh', {
        maxTokens: 40,
        temperature: 0,
        onToken: (tokens) => generated.push(...tokens),
      });
      expect(generated).toHaveLength(40);
      expect(generated.every((token) => token >= vocabulary.firstTextToken)).toBe(true);
      await context.dispose();
    } finally {
      await model.dispose();
    }
  });
});
