import { z } from 'zod';
import type { HardwareProfileName } from '../performance-model/hardware-profiles.js';
import type { EngineAdapter } from './engine-adapter.js';
import { engineMeteringConfigSchema } from './engine-metering-config.js';

/**
 * An engine type as a plugin: everything Gravity needs to know about one kind of engine, exported by the
 * engine's folder and registered in engine-registry.ts. Code outside the folder reads these fields and
 * never tests the type name.
 */
export interface EngineDefinition<Schema extends EngineConfigSchema = EngineConfigSchema> {
  /** The kebab-case name config uses (`engines.<id>.type`). */
  readonly type: z.output<Schema>['type'];
  /** The engine's entry in config, `type` and `metering` included (see defineEngineConfigSchema). */
  readonly configSchema: Schema;
  readonly capabilities: EngineCapabilities;
  /** What metering needs to choose a power source for a replica with this config. */
  hardware(config: z.output<Schema>): EngineHardware;
  /** Builds an adapter; `start()` is the caller's. Throws ConfigError for problems found only now. */
  create(context: EngineCreateContext<z.output<Schema>>): Promise<EngineAdapter>;
  /**
   * Problems the schema cannot express, found when config is loaded (e.g. a model that does not fit its
   * emulated GPUs). Each starts with the setting's path below `engines.<id>` (`.weightDtype …`, or `: …`).
   */
  configProblems?(config: z.output<Schema>): string[];
  /** Applies `--threads`, `--slots`, `--context` (or their environment variables) where they mean something. */
  applyTuning?(config: z.output<Schema>, tuning: EngineTuning): void;
}

export interface EngineCapabilities {
  /** One engine serves several models (an upstream server), or exactly one (a model loaded here). */
  readonly servesSeveralModels: boolean;
  /** Models on this engine may give the name the engine knows them by (`models.<id>.upstreamModel`). */
  readonly upstreamModelNames: boolean;
  /** The engine models its own device's power: its adapters carry `extensions.modelledPower`. */
  readonly modelledPower: boolean;
  /** The engine counts its own work the way vLLM does: its adapters carry `extensions.counters`. */
  readonly workCounters: boolean;
}

/** Where an engine's work draws power, and what the power model assumes when config declares nothing. */
export interface EngineHardware {
  /** The processor doing the work. */
  readonly processor: 'cpu' | 'gpu';
  /**
   * Whether that processor belongs to this host and burns power for this engine (llama.cpp in Gravity's
   * process), so RAPL or NVML here can measure it. An upstream's and an emulated replica's do not.
   */
  readonly onThisHost: boolean;
  /** Defaults of the declared power model (`metering.energy.hardware`, `count`, `saturationRequests`). */
  readonly powerModel: {
    readonly hardware: HardwareProfileName;
    readonly count: number;
    /** Concurrent requests at which the replica is fully utilised. */
    readonly saturationRequests: number;
  };
}

/** Command-line tuning of local engines; an engine applies the settings it has and ignores the rest. */
export interface EngineTuning {
  threads?: number | undefined;
  slots?: number | undefined;
  contextTokens?: number | undefined;
}

/** A model that config maps to the engine being created. */
export interface ServedModel {
  id: string;
  upstreamModel: string | undefined;
  contextTokens: number | undefined;
}

export interface EngineCreateContext<Config> {
  /** The engine's name in config (`engines.<id>`). */
  id: string;
  config: Config;
  /** Model ids that config maps to this engine. */
  models: ServedModel[];
  /** Where generated models and other files live. */
  dataDir: string;
  env: NodeJS.ProcessEnv;
}

/**
 * The shape every engine's config schema has: a strict object with the `type` literal and the common
 * `metering` block. Build one with defineEngineConfigSchema.
 */
export type EngineConfigSchema = z.ZodObject<
  { type: z.ZodLiteral<string>; metering: typeof engineMeteringConfigSchema } & z.core.$ZodShape,
  z.core.$strict
>;

/**
 * An engine type's config schema: its own settings plus `type` and the `metering` block every engine
 * has. Strict, so a misspelt setting is an error naming its path.
 */
export function defineEngineConfigSchema<const Type extends string, Shape extends z.core.$ZodShape>(
  type: Type,
  shape: Shape,
) {
  return z.strictObject({ type: z.literal(type), ...shape, metering: engineMeteringConfigSchema });
}
