import { z } from 'zod';
import { emulatedEngineDefinition } from './emulated/emulated-definition.js';
import type { EngineAdapter } from './engine-adapter.js';
import type {
  EngineCapabilities,
  EngineConfigSchema,
  EngineDefinition,
  EngineHardware,
  ServedModel,
} from './engine-definition.js';
import { llamaCppEngineDefinition } from './llama-cpp/llama-cpp-definition.js';
import { openAIUpstreamEngineDefinition } from './openai-upstream/openai-upstream-definition.js';

/**
 * Every engine type Gravity knows. A new type is one folder exporting one EngineDefinition, added to this
 * list: the config schema, engine creation and metering pick it up from here.
 */
export const engineDefinitions = [
  llamaCppEngineDefinition,
  openAIUpstreamEngineDefinition,
  emulatedEngineDefinition,
] as const;

/** The tuple of the definitions' schemas: `map` returns an array, and zod needs the tuple to infer the union. */
type ConfigSchemasOf<Definitions extends readonly { configSchema: EngineConfigSchema }[]> = {
  -readonly [Index in keyof Definitions]: Definitions[Index]['configSchema'];
};

/** One entry of config's `engines`, validated by the schema of the definition its `type` names. */
export const engineConfigSchema = z.discriminatedUnion(
  'type',
  engineDefinitions.map((definition) => definition.configSchema) as ConfigSchemasOf<typeof engineDefinitions>,
);

export type EngineConfig = z.infer<typeof engineConfigSchema>;

const definitionsByType = new Map<string, EngineDefinition>(
  engineDefinitions.map((definition) => [definition.type, definition]),
);

/** The definition of a registered type; config validation has already refused any other. */
export function engineDefinition(type: string): EngineDefinition {
  const definition = definitionsByType.get(type);
  if (!definition) throw new Error(`no engine type '${type}' is registered`);
  return definition;
}

/** The registered types that have a capability, for messages that say where a setting applies. */
export function engineTypesWith(capability: keyof EngineCapabilities): string[] {
  return engineDefinitions
    .filter((definition) => definition.capabilities[capability])
    .map((definition) => definition.type);
}

/** What metering needs to know about the hardware behind an engine with this config. */
export function engineHardware(config: EngineConfig): EngineHardware {
  return engineDefinition(config.type).hardware(config);
}

/** How a model entry names its engines: `engine` (one) or `engines` (replicas). */
export interface ModelEngines {
  engine?: string | undefined;
  engines?: string[] | undefined;
}

/** The engines that serve a model, whichever of `engine` and `engines` the config used. */
export function servingEngineIds(model: ModelEngines): string[] {
  return model.engines ?? (model.engine === undefined ? [] : [model.engine]);
}

/** The parts of Gravity's config that engine creation reads. */
export interface EnginesConfig {
  engines: Record<string, EngineConfig>;
  models: Record<
    string,
    ModelEngines & { upstreamModel?: string | undefined; contextTokens?: number | undefined }
  >;
  dataDir: string;
}

/** Creates every configured engine (not yet started), in config order. */
export async function createEngines(
  config: EnginesConfig,
  env: NodeJS.ProcessEnv = process.env,
): Promise<EngineAdapter[]> {
  const engines: EngineAdapter[] = [];
  for (const [id, engineConfig] of Object.entries(config.engines)) {
    const models: ServedModel[] = Object.entries(config.models)
      .filter(([, model]) => servingEngineIds(model).includes(id))
      .map(([modelId, model]) => ({
        id: modelId,
        upstreamModel: model.upstreamModel,
        contextTokens: model.contextTokens,
      }));
    const definition = engineDefinition(engineConfig.type);
    engines.push(await definition.create({ id, config: engineConfig, models, dataDir: config.dataDir, env }));
  }
  return engines;
}
