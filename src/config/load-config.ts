import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../core/config-error.js';
import { engineDefinition, engineTypesWith, servingEngineIds } from '../engines/engine-registry.js';
import { withEndpointPickerEngines } from '../epp/epp-config.js';
import { configSchema, type GravityConfig } from './config-schema.js';
import { emulatedFleetDocument, parseEmulateOption } from './emulate-option.js';

/** Settings given on the command line; they win over environment variables, which win over the file. */
export interface ConfigOverrides {
  configPath?: string | undefined;
  /** A parsed configuration document, used instead of a file (tests, embedding). */
  document?: Record<string, unknown> | undefined;
  host?: string | undefined;
  port?: number | undefined;
  /** Serve this GGUF file instead of the generated models. */
  modelPath?: string | undefined;
  /** Serve an emulated fleet instead, e.g. `h100:llama-3.1-8b:4` (see emulate-option.ts). */
  emulate?: string | undefined;
  threads?: number | undefined;
  slots?: number | undefined;
  contextTokens?: number | undefined;
  logLevel?: string | undefined;
  dataDir?: string | undefined;
  /** Serve the Endpoint Picker's ext_proc service on this port (the file's `epp` section says the rest). */
  extProcPort?: number | undefined;
}

/**
 * The engines and models when the configuration names none: an emulated fleet (`--emulate`), one GGUF
 * file (`--model`), or the two models Gravity generates, each on its own in-process engine.
 */
function defaultDocument(modelPath: string | undefined, emulate?: string): Record<string, unknown> {
  if (emulate !== undefined) {
    try {
      return emulatedFleetDocument(parseEmulateOption(emulate));
    } catch (error) {
      throw new ConfigError([`--emulate: ${(error as Error).message}`], 'command line');
    }
  }
  if (modelPath) {
    const modelId = path.basename(modelPath).replace(/\.gguf$/i, '');
    return {
      engines: { local: { type: 'llama-cpp', model: { path: modelPath } } },
      models: { [modelId]: { engine: 'local' } },
    };
  }
  return {
    engines: {
      tiny: { type: 'llama-cpp', model: { generated: 'gravity-tiny' } },
      'tiny-random': { type: 'llama-cpp', model: { generated: 'gravity-tiny-random' } },
    },
    models: { 'gravity-tiny': { engine: 'tiny' }, 'gravity-tiny-random': { engine: 'tiny-random' } },
  };
}

/** Sets `document[section]`'s `store` and `url` when `url` is given, keeping the section's other settings. */
function withStoreUrl(
  document: Record<string, unknown>,
  section: 'ledger' | 'state',
  store: string,
  url: string | undefined,
): void {
  if (!url) return;
  const settings = document[section];
  document[section] = {
    ...(settings !== null && typeof settings === 'object' ? settings : {}),
    store,
    url,
  };
}

function integerFrom(name: string, value: string | undefined): number | undefined {
  if (value === undefined || value === '') return undefined;
  const parsed = Number(value);
  if (!Number.isInteger(parsed))
    throw new ConfigError([`${name}: expected an integer, got '${value}'`], 'environment');
  return parsed;
}

/** Reads the optional YAML file, applies environment and command-line overrides, validates everything. */
export function loadConfig(
  overrides: ConfigOverrides = {},
  env: NodeJS.ProcessEnv = process.env,
): GravityConfig {
  const configPath = overrides.configPath ?? env.GRAVITY_CONFIG;
  const modelPath = overrides.modelPath ?? env.GRAVITY_MODEL;
  const emulate = overrides.emulate ?? (env.GRAVITY_EMULATE || undefined);
  let document: Record<string, unknown>;
  const source =
    configPath ??
    (overrides.document ? 'inline document' : emulate !== undefined ? '--emulate' : 'built-in defaults');
  if (modelPath && emulate !== undefined)
    throw new ConfigError(['--model and --emulate cannot be combined: choose one'], 'command line');
  if (overrides.document) {
    document = structuredClone(overrides.document);
    if (emulate !== undefined) Object.assign(document, defaultDocument(undefined, emulate));
    // The EPP's endpoints are engines too: a file with only an `epp` section serves them, not the
    // built-in models; before validation, so that they are validated and defaulted like any engine.
    withEndpointPickerEngines(document);
    document.engines ??= defaultDocument(undefined).engines;
    document.models ??= defaultDocument(undefined).models;
  } else if (configPath) {
    let text: string;
    try {
      text = readFileSync(configPath, 'utf8');
    } catch (error) {
      throw new ConfigError([`cannot read ${configPath}: ${(error as Error).message}`], source);
    }
    let parsed: unknown;
    try {
      parsed = parseYaml(text);
    } catch (error) {
      throw new ConfigError([`YAML syntax: ${(error as Error).message}`], source);
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new ConfigError(['the file must hold a YAML mapping'], source);
    }
    document = parsed as Record<string, unknown>;
    if (modelPath || emulate !== undefined) Object.assign(document, defaultDocument(modelPath, emulate));
    // The EPP's endpoints are engines too: a file with only an `epp` section serves them, not the
    // built-in models; before validation, so that they are validated and defaulted like any engine.
    withEndpointPickerEngines(document);
    document.engines ??= defaultDocument(undefined).engines;
    document.models ??= defaultDocument(undefined).models;
  } else {
    document = defaultDocument(modelPath, emulate);
  }

  // A URL in the environment keeps its password out of the file, and names the store it is for: the
  // ledger's PostgreSQL, the shared-state Redis (limits, budgets and keys across replicas). Applied
  // before validation: a file that says `store: postgres` may leave the URL to the environment.
  withStoreUrl(document, 'ledger', 'postgres', env.GRAVITY_LEDGER_URL);
  withStoreUrl(document, 'state', 'redis', env.GRAVITY_STATE_URL);
  const result = configSchema.safeParse(document);
  if (!result.success) throw new ConfigError(result.error.issues.map(describeIssue), source);
  const config = result.data;

  const server = config.server;
  server.host = overrides.host ?? env.GRAVITY_HOST ?? server.host;
  server.port = overrides.port ?? integerFrom('GRAVITY_PORT', env.GRAVITY_PORT) ?? server.port;
  server.logLevel = (overrides.logLevel ??
    env.GRAVITY_LOG_LEVEL ??
    server.logLevel) as typeof server.logLevel;
  config.dataDir = overrides.dataDir ?? env.GRAVITY_DATA_DIR ?? config.dataDir;
  if (overrides.extProcPort !== undefined) {
    if (!config.epp)
      throw new ConfigError(
        [
          '--ext-proc-port: the Endpoint Picker needs an `epp` section (endpoints, models) in the config file',
        ],
        source,
      );
    config.epp.port = overrides.extProcPort;
  }
  const tuning = {
    threads: overrides.threads ?? integerFrom('GRAVITY_THREADS', env.GRAVITY_THREADS),
    slots: overrides.slots ?? integerFrom('GRAVITY_SLOTS', env.GRAVITY_SLOTS),
    contextTokens:
      overrides.contextTokens ?? integerFrom('GRAVITY_CONTEXT_TOKENS', env.GRAVITY_CONTEXT_TOKENS),
  };
  // Each engine type applies the settings it has (today the in-process llama.cpp engine).
  for (const engine of Object.values(config.engines))
    engineDefinition(engine.type).applyTuning?.(engine, tuning);

  // Re-validate after overrides so a bad environment value is reported like a bad file value.
  const final = configSchema.safeParse(config);
  if (!final.success)
    throw new ConfigError(final.error.issues.map(describeIssue), `${source} with overrides`);
  const referenceProblems = checkReferences(final.data);
  if (referenceProblems.length > 0) throw new ConfigError(referenceProblems, source);
  return final.data;
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const at = issue.path.length > 0 ? issue.path.map(String).join('.') : '(root)';
  if (issue.code === 'unrecognized_keys') {
    return issue.keys
      .map((key) => `${at === '(root)' ? key : `${at}.${key}`}: unknown setting`)
      .join('\n  - ');
  }
  return `${at}: ${issue.message}`;
}

/** Cross-references the schema cannot express: every model names an existing engine, and so on. */
function checkReferences(config: GravityConfig): string[] {
  const problems: string[] = [];
  if (config.batch.store === 'postgres' && config.ledger.store !== 'postgres')
    problems.push(
      "batch.store: postgres keeps batches in the ledger's database: set ledger.store: postgres and its url",
    );
  if (config.responses.store === 'postgres' && config.ledger.store !== 'postgres')
    problems.push(
      "responses.store: postgres keeps responses in the ledger's database: set ledger.store: postgres and its url",
    );
  const modelsByEngine = new Map<string, string[]>();
  /** Problems an engine type finds in its own settings, each with the engine ids it applies to. */
  const engineProblems = new Map<string, string[]>();
  for (const [modelId, model] of Object.entries(config.models)) {
    if ((model.engine === undefined) === (model.engines === undefined)) {
      problems.push(
        `models.${modelId}: give either engine (one engine) or engines (a list), not both or neither`,
      );
      continue;
    }
    const key = model.engines ? 'engines' : 'engine';
    const engineIds = servingEngineIds(model);
    if (new Set(engineIds).size !== engineIds.length)
      problems.push(`models.${modelId}.engines lists an engine more than once`);
    for (const engineId of new Set(engineIds)) {
      const engine = config.engines[engineId];
      if (!engine) {
        problems.push(`models.${modelId}.${key} references unknown engine '${engineId}'`);
        continue;
      }
      modelsByEngine.set(engineId, [...(modelsByEngine.get(engineId) ?? []), modelId]);
      if (
        !engineDefinition(engine.type).capabilities.upstreamModelNames &&
        model.upstreamModel !== undefined
      ) {
        problems.push(
          `models.${modelId}.upstreamModel applies to ${engineTypesWith('upstreamModelNames').join(' and ')} engines, not '${engineId}' (${engine.type})`,
        );
      }
    }
  }
  for (const [engineId, engine] of Object.entries(config.engines)) {
    const definition = engineDefinition(engine.type);
    const served = modelsByEngine.get(engineId) ?? [];
    if (served.length === 0) problems.push(`engines.${engineId} is not used by any entry in models`);
    if (!definition.capabilities.servesSeveralModels && served.length > 1) {
      problems.push(
        `engines.${engineId} is a ${engine.type} engine and serves one model, but models ${served.join(', ')} use it`,
      );
    }
    for (const problem of definition.configProblems?.(engine) ?? [])
      engineProblems.set(problem, [...(engineProblems.get(problem) ?? []), engineId]);
  }
  // Identical replicas fail identically: say it once, not once per replica.
  for (const [problem, engineIds] of engineProblems) {
    const more = engineIds.length > 1 ? ` (and ${engineIds.length - 1} more like it)` : '';
    problems.push(`engines.${engineIds[0]}${problem}${more}`);
  }
  // The EPP's endpoints found at run time bring their models with them (epp.models) when they join.
  if (Object.keys(config.models).length === 0 && config.epp?.discovery === undefined)
    problems.push('models: at least one model is required');
  for (const modelId of Object.keys(config.pricing.models)) {
    if (!config.models[modelId])
      problems.push(`pricing.models.${modelId} prices a model that is not in models`);
  }
  for (const engineId of Object.keys(config.routing.replicas))
    if (!config.engines[engineId])
      problems.push(`routing.replicas.${engineId} labels an engine that is not in engines`);
  for (const [alias, modelId] of Object.entries(config.routing.aliases)) {
    if (!config.models[modelId])
      problems.push(`routing.aliases.${alias} points to '${modelId}', which is not in models`);
    if (config.models[alias]) problems.push(`routing.aliases.${alias} is also a model id`);
  }
  return problems;
}
