import { stat } from 'node:fs/promises';
import path from 'node:path';

/**
 * The shape of a model as the performance model needs it: how many FLOPs a token costs, how many bytes
 * of weights a step reads, and how many bytes of KV cache a token holds. Shapes come from each model's
 * published `config.json` (Hugging Face model cards); parameter counts are the models' stated totals.
 */
export interface ModelProfile {
  name: string;
  parameters: number;
  layers: number;
  hiddenSize: number;
  attentionHeads: number;
  kvHeads: number;
  headDim: number;
  contextTokens: number;
  /** Bytes of weights when loaded as `weightDtype`, across all tensor-parallel ranks. */
  weightBytes: number;
  weightDtype: WeightDtype;
  /** Bytes of KV cache one token holds across all layers (K and V), at `kvDtype`. */
  kvBytesPerToken: number;
  kvDtype: KvDtype;
  source: string;
}

export type WeightDtype = 'bf16' | 'fp8' | 'int4' | 'gguf';
export type KvDtype = 'bf16' | 'fp8';

export const bytesPerWeight: Record<Exclude<WeightDtype, 'gguf'>, number> = {
  bf16: 2,
  fp8: 1,
  // 4-bit weights carry group scales: ~4.5 bits per weight for group size 128 with a 16-bit scale.
  int4: 0.5625,
};
export const bytesPerKvElement: Record<KvDtype, number> = { bf16: 2, fp8: 1 };

type ModelShape = Pick<
  ModelProfile,
  | 'parameters'
  | 'layers'
  | 'hiddenSize'
  | 'attentionHeads'
  | 'kvHeads'
  | 'headDim'
  | 'contextTokens'
  | 'source'
>;

const modelShapes = {
  'llama-3.1-8b': {
    parameters: 8.03e9,
    layers: 32,
    hiddenSize: 4096,
    attentionHeads: 32,
    kvHeads: 8,
    headDim: 128,
    contextTokens: 131_072,
    source: 'meta-llama/Llama-3.1-8B config.json; 16.06 GB BF16 (8.03e9 parameters × 2 bytes)',
  },
  'llama-3.1-70b': {
    parameters: 70.6e9,
    layers: 80,
    hiddenSize: 8192,
    attentionHeads: 64,
    kvHeads: 8,
    headDim: 128,
    contextTokens: 131_072,
    source: 'meta-llama/Llama-3.1-70B config.json',
  },
  'qwen2.5-7b': {
    parameters: 7.62e9,
    layers: 28,
    hiddenSize: 3584,
    attentionHeads: 28,
    kvHeads: 4,
    headDim: 128,
    contextTokens: 32_768,
    source: 'Qwen/Qwen2.5-7B-Instruct config.json',
  },
  'mistral-7b': {
    parameters: 7.25e9,
    layers: 32,
    hiddenSize: 4096,
    attentionHeads: 32,
    kvHeads: 8,
    headDim: 128,
    contextTokens: 32_768,
    source: 'mistralai/Mistral-7B-Instruct-v0.3 config.json',
  },
} as const satisfies Record<string, ModelShape>;

export type ModelProfileName = keyof typeof modelShapes;
export const modelProfileNames = Object.keys(modelShapes) as [ModelProfileName, ...ModelProfileName[]];

export function kvBytesPerToken(shape: Pick<ModelShape, 'layers' | 'kvHeads' | 'headDim'>, kvDtype: KvDtype) {
  return shape.layers * shape.kvHeads * shape.headDim * 2 * bytesPerKvElement[kvDtype];
}

/** A named model at the given weight and KV precision. */
export function modelProfile(
  name: string,
  options: { weightDtype?: Exclude<WeightDtype, 'gguf'>; kvDtype?: KvDtype } = {},
): ModelProfile | undefined {
  const shape = (modelShapes as Record<string, ModelShape>)[name];
  if (!shape) return undefined;
  const weightDtype = options.weightDtype ?? 'bf16';
  const kvDtype = options.kvDtype ?? 'bf16';
  return {
    name: weightDtype === 'bf16' ? name : `${name}-${weightDtype}`,
    ...shape,
    weightBytes: shape.parameters * bytesPerWeight[weightDtype],
    weightDtype,
    kvBytesPerToken: kvBytesPerToken(shape, kvDtype),
    kvDtype,
  };
}

/**
 * Reads a GGUF file's shape from its metadata, through the same reader node-llama-cpp uses to load it.
 * Weight bytes are the tensor data as stored (quantised or not), so a Q4 file is modelled as Q4.
 */
export async function modelProfileFromGguf(filePath: string): Promise<ModelProfile> {
  const { readGgufFileInfo } = await import('node-llama-cpp');
  const info = await readGgufFileInfo(filePath, {
    logWarnings: false,
    // The vocabulary is most of a small file's metadata and says nothing about cost.
    ignoreKeys: [
      'tokenizer.ggml.tokens',
      'tokenizer.ggml.scores',
      'tokenizer.ggml.token_type',
      'tokenizer.ggml.merges',
    ],
  });
  const metadata = info.architectureMetadata as {
    block_count?: number;
    embedding_length?: number;
    context_length?: number;
    attention?: { head_count?: number; head_count_kv?: number; key_length?: number };
  };
  const layers = metadata.block_count;
  const hiddenSize = metadata.embedding_length;
  const attentionHeads = metadata.attention?.head_count;
  if (!layers || !hiddenSize || !attentionHeads)
    throw new Error(`${filePath}: GGUF metadata lacks block_count, embedding_length or attention.head_count`);
  const kvHeads = metadata.attention?.head_count_kv ?? attentionHeads;
  const headDim = metadata.attention?.key_length ?? hiddenSize / attentionHeads;
  let parameters = 0;
  for (const tensor of info.fullTensorInfo ?? info.tensorInfo ?? [])
    parameters += tensor.dimensions.reduce((product: number, size) => product * Number(size), 1);
  const fileBytes = (await stat(filePath)).size;
  const shape = { layers, kvHeads, headDim };
  return {
    name: path.basename(filePath, '.gguf'),
    parameters,
    layers,
    hiddenSize,
    attentionHeads,
    kvHeads,
    headDim,
    contextTokens: metadata.context_length ?? 4096,
    weightBytes: fileBytes - info.totalMetadataSize - (info.totalTensorInfoSize ?? 0),
    weightDtype: 'gguf',
    // llama.cpp keeps its KV cache in F16 by default.
    kvBytesPerToken: kvBytesPerToken(shape, 'bf16'),
    kvDtype: 'bf16',
    source: `GGUF metadata of ${path.basename(filePath)}`,
  };
}
