import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  getLlama,
  type Llama,
  type LlamaContext,
  LlamaLogLevel,
  type LlamaModel,
  type Token,
} from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeGguf, readGgufHeader, readGgufMetadata } from './gguf-writer.js';
import { buildTinyModel, ensureTinyModel, tinyModelGeneratorVersion, tinyModelIds } from './tiny-model.js';

const alphabetTail = ' d e f g h i j k l m n o p q r s t u v w x y z';

describe('gguf writer', () => {
  it('round-trips metadata of every type through readGgufMetadata', () => {
    const buffer = encodeGguf({
      metadata: [
        { key: 'a.u32', value: { type: 'u32', value: 4_000_000_000 } },
        { key: 'a.i32', value: { type: 'i32', value: -7 } },
        { key: 'a.f32', value: { type: 'f32', value: 0.5 } },
        { key: 'a.bool', value: { type: 'bool', value: true } },
        { key: 'a.string', value: { type: 'string', value: 'h\u00e9llo \u2581' } },
        { key: 'a.u64', value: { type: 'u64', value: 2 ** 40 } },
        { key: 'a.strings', value: { type: 'array', itemType: 'string', values: ['x', '', 'yz'] } },
        { key: 'a.floats', value: { type: 'array', itemType: 'f32', values: [1.5, -2] } },
        { key: 'a.ints', value: { type: 'array', itemType: 'i32', values: [-1, 6] } },
        { key: 'a.uints', value: { type: 'array', itemType: 'u32', values: [] } },
      ],
      tensors: [],
    });
    expect(Object.fromEntries(readGgufMetadata(buffer))).toEqual({
      'a.u32': 4_000_000_000,
      'a.i32': -7,
      'a.f32': 0.5,
      'a.bool': true,
      'a.string': 'h\u00e9llo \u2581',
      'a.u64': 2 ** 40,
      'a.strings': ['x', '', 'yz'],
      'a.floats': [1.5, -2],
      'a.ints': [-1, 6],
      'a.uints': [],
    });
  });

  it('aligns tensor offsets and the data section to 32 bytes and stores data little-endian', () => {
    const buffer = encodeGguf({
      metadata: [],
      tensors: [
        { name: 'odd', dims: [3], type: 'f32', data: new Float32Array([1, 2, 3]) },
        { name: 'half', dims: [2, 3], type: 'f16', data: new Float32Array([1, -2, 65504, 0.1, 1e-8, 70000]) },
      ],
    });
    const header = readGgufHeader(buffer);
    expect(buffer.subarray(0, 4).toString('latin1')).toBe('GGUF');
    expect(header.version).toBe(3);
    expect(header.dataOffsetBytes % 32).toBe(0);
    expect(header.tensors).toEqual([
      { name: 'odd', dims: [3], ggmlType: 0, offsetBytes: 0 },
      { name: 'half', dims: [2, 3], ggmlType: 1, offsetBytes: 32 },
    ]);
    expect(buffer.readFloatLE(header.dataOffsetBytes + 8)).toBe(3);
    const halfStart = header.dataOffsetBytes + 32;
    const halves = Array.from({ length: 6 }, (_, i) => buffer.readUInt16LE(halfStart + i * 2));
    // 0.1 rounds to nearest 0x2e66; 1e-8 underflows to 0; 70000 overflows to +infinity.
    expect(halves).toEqual([0x3c00, 0xc000, 0x7bff, 0x2e66, 0x0000, 0x7c00]);
    expect(buffer.length % 32).toBe(0);
  });
});

describe('tiny model files', () => {
  let directory: string;

  beforeAll(async () => {
    directory = await mkdtemp(join(tmpdir(), 'gravity-tiny-files-'));
  });

  afterAll(async () => {
    await rm(directory, { recursive: true, force: true });
  });

  it('describes a 64-wide 2-layer llama with an SPM vocabulary in its header', () => {
    const header = readGgufHeader(buildTinyModel('alphabet'));
    const metadata = header.metadata;
    expect(metadata.get('general.architecture')).toBe('llama');
    expect(metadata.get('general.name')).toBe('gravity-tiny');
    expect(metadata.get('gravity.generator_version')).toBe(tinyModelGeneratorVersion);
    expect(metadata.get('llama.embedding_length')).toBe(64);
    expect(metadata.get('llama.block_count')).toBe(2);
    expect(metadata.get('llama.attention.head_count_kv')).toBe(2);
    expect(metadata.get('llama.attention.layer_norm_rms_epsilon')).toBeCloseTo(1e-5, 9);
    expect(metadata.has('tokenizer.chat_template')).toBe(false);
    const tokens = metadata.get('tokenizer.ggml.tokens') as string[];
    expect(tokens.slice(0, 4)).toEqual(['<unk>', '<s>', '</s>', '<0x00>']);
    expect(tokens).toContain('<0xFF>');
    expect(tokens.at(-1)).toBe('\u2581z');
    expect(metadata.get('llama.vocab_size')).toBe(tokens.length);
    expect(header.tensors.find((tensor) => tensor.name === 'output.weight')?.dims).toEqual([
      64,
      tokens.length,
    ]);
    expect(header.tensors.find((tensor) => tensor.name === 'blk.1.attn_k.weight')?.dims).toEqual([64, 32]);
  });

  it('is under 1 MB and byte-identical across builds', () => {
    for (const kind of ['alphabet', 'random'] as const) {
      const first = buildTinyModel(kind);
      expect(first.length).toBeLessThan(1024 * 1024);
      expect(buildTinyModel(kind).equals(first)).toBe(true);
    }
    expect(buildTinyModel('alphabet').equals(buildTinyModel('random'))).toBe(false);
  });

  it('writes the model once, replaces a stale file and leaves no temp files behind', async () => {
    const paths = await Promise.all([1, 2, 3, 4].map(() => ensureTinyModel('random', directory)));
    const path = join(directory, `${tinyModelIds.random}.gguf`);
    expect(new Set(paths)).toEqual(new Set([path]));
    expect((await readFile(path)).equals(buildTinyModel('random'))).toBe(true);

    const { mtimeMs } = await stat(path);
    await ensureTinyModel('random', directory);
    expect((await stat(path)).mtimeMs).toBe(mtimeMs);

    await writeFile(path, 'stale');
    await ensureTinyModel('random', directory);
    expect((await readFile(path)).equals(buildTinyModel('random'))).toBe(true);
    expect(await readdir(directory)).toEqual([`${tinyModelIds.random}.gguf`]);
  });
});

describe('tiny models in llama.cpp', () => {
  let directory: string;
  let llama: Llama;
  let alphabet: LlamaModel;
  let random: LlamaModel;
  let alphabetContext: LlamaContext;
  let randomContext: LlamaContext;

  beforeAll(async () => {
    directory = await mkdtemp(join(tmpdir(), 'gravity-tiny-llama-'));
    llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
    alphabet = await llama.loadModel({ modelPath: await ensureTinyModel('alphabet', directory) });
    random = await llama.loadModel({ modelPath: await ensureTinyModel('random', directory) });
    // One thread: the default thread count is far slower on small machines for a model this size.
    alphabetContext = await alphabet.createContext({ contextSize: 512, sequences: 2, threads: 1 });
    randomContext = await random.createContext({ contextSize: 512, sequences: 2, threads: 1 });
  });

  afterAll(async () => {
    await alphabetContext?.dispose();
    await randomContext?.dispose();
    await alphabet?.dispose();
    await random?.dispose();
    await llama?.dispose();
    await rm(directory, { recursive: true, force: true });
  });

  // Greedy generation on a fresh sequence; stops at EOS (included in the result) or maxTokens.
  async function generate(
    context: LlamaContext,
    prompt: Token[],
    maxTokens: number,
    options: { temperature: number; seed?: number } = { temperature: 0 },
  ): Promise<Token[]> {
    const sequence = context.getSequence();
    try {
      const output: Token[] = [];
      // Without yieldEogToken the generator ends silently at EOS, hiding why generation stopped.
      for await (const token of sequence.evaluate(prompt, { ...options, yieldEogToken: true })) {
        output.push(token);
        if (token === context.model.tokens.eos || output.length >= maxTokens) break;
      }
      return output;
    } finally {
      sequence.dispose();
    }
  }

  const withBos = (model: LlamaModel, text: string): Token[] => [model.tokens.bos!, ...model.tokenize(text)];

  it('loads both kinds with the expected vocabulary and special tokens', () => {
    for (const model of [alphabet, random]) {
      expect(model.fileInfo.tensorInfo?.length).toBe(2 + 2 * 9 + 1);
      expect(model.tokens.bos).toBe(1);
      expect(model.tokens.eos).toBe(2);
      expect(model.fileInfo.metadata.general.architecture).toBe('llama');
    }
  });

  it('tokenizes words to single letter-word tokens, with BOS only when asked', () => {
    const vocabulary = readGgufMetadata(buildTinyModel('alphabet')).get('tokenizer.ggml.tokens') as string[];
    const words = alphabet.tokenize('a b c');
    // SPM adds the prefix space itself, so the first word is '▁a' too.
    expect(words).toEqual(['\u2581a', '\u2581b', '\u2581c'].map((piece) => vocabulary.indexOf(piece)));
    expect(alphabet.tokenize('<s>a b c', true)).toEqual([alphabet.tokens.bos, ...words]);
    // ...and detokenizing strips it again at the start of a text.
    expect(alphabet.detokenize(words)).toBe('a b c');
    expect(alphabet.detokenize([words[1]!], false, [words[0]!])).toBe(' b');
  });

  it('continues the alphabet greedily and stops with EOS after z', async () => {
    const prompt = withBos(alphabet, 'a b c');
    const output = await generate(alphabetContext, prompt, 100);
    expect(output).toHaveLength(24);
    expect(output.at(-1)).toBe(alphabet.tokens.eos);
    const text = output.slice(0, -1);
    // Given the preceding tokens, the detokenizer keeps the leading space of '▁d'.
    expect(alphabet.detokenize(text, false, prompt)).toBe(alphabetTail);
    // Without them it strips it, as SPM does at the start of a text.
    expect(alphabet.detokenize(text)).toBe(alphabetTail.slice(1));
  });

  it('starts at " a" after any non-word token such as punctuation', async () => {
    const prompt = withBos(alphabet, 'Hello, world!');
    const output = await generate(alphabetContext, prompt, 100);
    expect(alphabet.detokenize(output.slice(0, 2), false, prompt)).toBe(' a b');
    expect(output).toHaveLength(27);
    expect(output.at(-1)).toBe(alphabet.tokens.eos);
  });

  it('follows the alphabet even when sampling at temperature 1', async () => {
    const prompt = withBos(alphabet, 'x');
    const output = await generate(alphabetContext, prompt, 10, { temperature: 1, seed: 7 });
    expect(alphabet.detokenize(output, false, prompt)).toBe(' y z');
    expect(output.at(-1)).toBe(alphabet.tokens.eos);
  });

  it('generates the same long random text on every run without ending early', async () => {
    const prompt = withBos(random, 'the quick brown fox');
    const first = await generate(randomContext, prompt, 200);
    const second = await generate(randomContext, prompt, 200);
    expect(first).toHaveLength(200);
    expect(first).not.toContain(random.tokens.eos);
    expect(second).toEqual(first);
    // Only word and character tokens win, so the text is printable ASCII.
    expect(random.detokenize(first, false, prompt)).toMatch(/^[\x20-\x7e]+$/);
  });

  it('makes random output depend on earlier tokens, not just the last one', async () => {
    const pairs: Array<[string, string]> = [
      ['x y z q', 'm n o q'],
      ['the quick brown fox', 'a quick brown fox'],
    ];
    for (const [left, right] of pairs) {
      const leftPrompt = withBos(random, left);
      const rightPrompt = withBos(random, right);
      expect(leftPrompt.at(-1)).toBe(rightPrompt.at(-1));
      const leftOutput = await generate(randomContext, leftPrompt, 20);
      const rightOutput = await generate(randomContext, rightPrompt, 20);
      expect(leftOutput).not.toEqual(rightOutput);
    }
  });

  // Retried: batched and single-sequence kernels are not bit-identical, so a rare near-tie can flip a
  // greedy token; a KV-cache mix-up would fail every attempt.
  it('gives parallel sequences the same output as running them alone', { retry: 2 }, async () => {
    const prompts = [withBos(random, 'x y z q'), withBos(random, 'm n o q')];
    const alone = [];
    for (const prompt of prompts) alone.push(await generate(randomContext, prompt, 50));
    const together = await Promise.all(prompts.map((prompt) => generate(randomContext, prompt, 50)));
    expect(together).toEqual(alone);
  });
});
