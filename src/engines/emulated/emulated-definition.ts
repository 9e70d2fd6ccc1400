import { ConfigError } from '../../core/config-error.js';
import { hardwareProfiles } from '../../performance-model/hardware-profiles.js';
import type { ModelProfile } from '../../performance-model/model-profiles.js';
import { queueOrderingPolicies } from '../../performance-model/queue-ordering.js';
import { type ReplicaSpec, ReplicaSpecError } from '../../performance-model/replica-spec.js';
import type { EngineDefinition } from '../engine-definition.js';
import { emulatedConfigSchema } from './emulated-config.js';
import { EmulatedEngine } from './emulated-engine.js';
import { emulatedReplicaSpec, loadEmulatedModel, namedEmulatedModel } from './emulated-replica-spec.js';

/** A replica of modelled hardware answering with synthetic text at the modelled speed, in this process. */
export const emulatedEngineDefinition = {
  type: 'emulated',
  configSchema: emulatedConfigSchema,
  capabilities: {
    servesSeveralModels: false,
    upstreamModelNames: false,
    modelledPower: true,
    workCounters: true,
  },
  // The modelled device does the work, not this host, so RAPL under `auto` never applies; metering reads
  // the engine's own power model (extensions.modelledPower), and the declared power model below is only
  // the description of the same hardware for anything that lacks it.
  hardware: (config) => ({
    processor: hardwareProfiles[config.hardware].kind,
    onThisHost: false,
    powerModel: {
      hardware: config.hardware,
      count: config.devices,
      saturationRequests: config.maxNumSeqs ?? 16,
    },
  }),
  configProblems(config) {
    const problems: string[] = [];
    if (typeof config.model !== 'string' && config.weightDtype !== undefined)
      problems.push('.weightDtype applies to named model profiles; a GGUF file has its own');
    // A GGUF file's shape is only known at start (create); a named profile is checked now.
    const model = namedEmulatedModel(config);
    if (!model) return problems;
    try {
      emulatedReplicaSpec(config, model);
    } catch (error) {
      if (!(error instanceof ReplicaSpecError)) throw error;
      problems.push(`: ${error.message}`);
    }
    return problems;
  },
  async create({ id, config, models }) {
    let model: ModelProfile;
    try {
      model = await loadEmulatedModel(config);
    } catch (error) {
      throw new ConfigError(
        [`engines.${id}.model.gguf: ${(error as Error).message}`],
        'checked at engine start',
      );
    }
    let spec: ReplicaSpec;
    try {
      spec = emulatedReplicaSpec(config, model);
    } catch (error) {
      // Said like a configuration error: the fix is in the config (more devices, smaller model).
      if (error instanceof ReplicaSpecError)
        throw new ConfigError([`engines.${id}: ${error.message}`], 'checked at engine start');
      throw error;
    }
    return new EmulatedEngine({
      id,
      modelId: models[0]?.id ?? id,
      spec,
      ordering: queueOrderingPolicies[config.ordering] ?? queueOrderingPolicies.fcfs!,
      contextTokens: config.contextTokens ?? models[0]?.contextTokens ?? model.contextTokens,
      servedFeatures: config.servedFeatures ? new Set(config.servedFeatures) : undefined,
    });
  },
} satisfies EngineDefinition<typeof emulatedConfigSchema>;
