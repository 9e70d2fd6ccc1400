import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { configSchema, type GravityConfig } from './config-schema.js';

/** A configuration problem, with the path of every offending setting. Printed as is at start. */
export class ConfigError extends Error {
  constructor(
    readonly problems: string[],
    source: string,
  ) {
    super(`invalid configuration (${source}):\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

/** Settings given on the command line; they win over environment variables, which win over the file. */
export interface ConfigOverrides {
  configPath?: string | undefined;
  /** A parsed configuration document, used instead of a file (tests, embedding). */
  document?: Record<string, unknown> | undefined;
  host?: string | undefined;
  port?: number | undefined;
  /** Serve this GGUF file instead of the generated models. */
  modelPath?: string | undefined;
  threads?: number | undefined;
  slots?: number | undefined;
  contextTokens?: number | undefined;
  logLevel?: string | undefined;
  dataDir?: string | undefined;
}

/** The embedded defaults: the two models Gravity generates, each on its own in-process engine. */
function defaultDocument(modelPath: string | undefined): Record<string, unknown> {
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
  let document: Record<string, unknown>;
  const source = configPath ?? (overrides.document ? 'inline document' : 'built-in defaults');
  if (overrides.document) {
    document = structuredClone(overrides.document);
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
    if (modelPath) Object.assign(document, defaultDocument(modelPath));
    document.engines ??= defaultDocument(undefined).engines;
    document.models ??= defaultDocument(undefined).models;
  } else {
    document = defaultDocument(modelPath);
  }

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
  const threads = overrides.threads ?? integerFrom('GRAVITY_THREADS', env.GRAVITY_THREADS);
  const slots = overrides.slots ?? integerFrom('GRAVITY_SLOTS', env.GRAVITY_SLOTS);
  const contextTokens =
    overrides.contextTokens ?? integerFrom('GRAVITY_CONTEXT_TOKENS', env.GRAVITY_CONTEXT_TOKENS);
  for (const engine of Object.values(config.engines)) {
    if (engine.type !== 'llama-cpp') continue;
    if (threads !== undefined) engine.threads = threads;
    if (slots !== undefined) engine.slots = slots;
    if (contextTokens !== undefined) engine.contextTokens = contextTokens;
  }

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
  const modelsByEngine = new Map<string, string[]>();
  for (const [modelId, model] of Object.entries(config.models)) {
    const engine = config.engines[model.engine];
    if (!engine) {
      problems.push(`models.${modelId}.engine references unknown engine '${model.engine}'`);
      continue;
    }
    modelsByEngine.set(model.engine, [...(modelsByEngine.get(model.engine) ?? []), modelId]);
    if (engine.type === 'llama-cpp' && model.upstreamModel !== undefined) {
      problems.push(
        `models.${modelId}.upstreamModel applies to openai-upstream engines, not '${model.engine}' (llama-cpp)`,
      );
    }
  }
  for (const [engineId, engine] of Object.entries(config.engines)) {
    const served = modelsByEngine.get(engineId) ?? [];
    if (served.length === 0) problems.push(`engines.${engineId} is not used by any entry in models`);
    if (engine.type === 'llama-cpp' && served.length > 1) {
      problems.push(
        `engines.${engineId} is a llama-cpp engine and serves one model, but models ${served.join(', ')} use it`,
      );
    }
  }
  if (Object.keys(config.models).length === 0) problems.push('models: at least one model is required');
  for (const modelId of Object.keys(config.pricing.models)) {
    if (!config.models[modelId])
      problems.push(`pricing.models.${modelId} prices a model that is not in models`);
  }
  return problems;
}
