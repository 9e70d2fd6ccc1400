import { hardwareProfiles } from '../../performance-model/hardware-profiles.js';
import {
  kvBytesPerToken,
  type ModelProfile,
  modelProfile,
  modelProfileFromGguf,
} from '../../performance-model/model-profiles.js';
import { type ReplicaSpec, resolveReplicaSpec } from '../../performance-model/replica-spec.js';
import type { EmulatedEngineConfig } from './emulated-config.js';

/** The model profile an emulated engine names, or null when it points at a GGUF file (read at start). */
export function namedEmulatedModel(config: EmulatedEngineConfig): ModelProfile | null {
  if (typeof config.model !== 'string') return null;
  const profile = modelProfile(config.model, { weightDtype: config.weightDtype, kvDtype: config.kvDtype });
  if (!profile) throw new Error(`unknown model profile '${config.model}'`);
  return profile;
}

/** The model profile of an emulated engine, reading a GGUF file's metadata when it names one. */
export async function loadEmulatedModel(config: EmulatedEngineConfig): Promise<ModelProfile> {
  const named = namedEmulatedModel(config);
  if (named) return named;
  const gguf = await modelProfileFromGguf((config.model as { gguf: string }).gguf);
  if (!config.kvDtype) return gguf;
  return { ...gguf, kvDtype: config.kvDtype, kvBytesPerToken: kvBytesPerToken(gguf, config.kvDtype) };
}

/** The replica an emulated engine models. Throws ReplicaSpecError when the model does not fit. */
export function emulatedReplicaSpec(config: EmulatedEngineConfig, model: ModelProfile): ReplicaSpec {
  return resolveReplicaSpec({
    hardware: hardwareProfiles[config.hardware],
    deviceCount: config.devices,
    model,
    flavour: config.flavour,
    maxNumSeqs: config.maxNumSeqs,
    maxNumBatchedTokens: config.maxNumBatchedTokens,
    prefixCaching: config.prefixCaching,
  });
}

/** One line for the start log: what is emulated, and how much KV cache it has. */
export function describeReplicaSpec(spec: ReplicaSpec): string {
  const kvTokens = spec.kvBlocks * spec.kvBlockTokens;
  return (
    `${spec.model.name} on ${spec.deviceCount}× ${spec.hardware.name} (${spec.flavour}): ` +
    `${spec.kvBlocks} KV blocks (${kvTokens} tokens), maxNumSeqs ${spec.maxNumSeqs}, ` +
    `maxNumBatchedTokens ${spec.maxNumBatchedTokens}, prefix caching ${spec.prefixCaching ? 'on' : 'off'}`
  );
}
