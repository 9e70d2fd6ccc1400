import type { FastifyInstance } from 'fastify';
import { errors } from '../core/errors.js';
import { requestFeatures, responsesNativeFeatures, servesFeature } from '../core/request-features.js';
import type { EngineAdapter } from '../engines/engine-adapter.js';
import type { Gateway } from '../gateway/gateway.js';

/**
 * Every request feature Gravity names, the Responses-native families as `tools.*`, `input.*` … (their
 * members are open-ended); an engine serves those its allow- and deny-lists let through.
 */
const allFeatures: readonly string[] = [
  ...new Set([...Object.values(requestFeatures), ...responsesNativeFeatures]),
];

/** One model of `/v1/models` as Gravity describes it, from every replica that serves it. */
export interface ModelDescription {
  id: string;
  object: 'model';
  /** The earliest `created` among its replicas (Unix seconds); 0 when none says. */
  created: number;
  owned_by: string;
  /** The largest window among its replicas: routing sends a long prompt to one it fits. Absent: unknown. */
  context_length?: number;
  capabilities: {
    /** The API routes that serve the model. */
    endpoints: string[];
    /** Request features (docs/openai-compatibility.md) at least one replica serves: routing finds it. */
    features: string[];
    /** Replicas serving the model, by engine type (`llama-cpp`, `openai-upstream`, `emulated`). */
    replicas: Record<string, number>;
  };
}

/**
 * The routes an engine serves a model on: every engine generates (the Responses API is translated onto
 * chat); embeddings only where the engine serves the `embeddings` feature.
 */
function endpointsOf(engine: EngineAdapter): string[] {
  const endpoints = ['/v1/chat/completions', '/v1/completions', '/v1/responses'];
  if (servesFeature(engine, requestFeatures.embeddings)) endpoints.push('/v1/embeddings');
  return endpoints;
}

/** Describes every model the gateway serves, each once. */
export function describeModels(gateway: Gateway): ModelDescription[] {
  const byId = new Map<
    string,
    { description: ModelDescription; endpoints: Set<string>; features: Set<string> }
  >();
  for (const engine of gateway.engines) {
    for (const model of engine.models()) {
      let entry = byId.get(model.id);
      if (!entry) {
        entry = {
          description: {
            id: model.id,
            object: 'model',
            created: 0,
            owned_by: model.ownedBy,
            capabilities: { endpoints: [], features: [], replicas: {} },
          },
          endpoints: new Set(),
          features: new Set(),
        };
        byId.set(model.id, entry);
      }
      const description = entry.description;
      if (model.created !== undefined && (description.created === 0 || model.created < description.created))
        description.created = model.created;
      if (model.contextTokens !== null && model.contextTokens > (description.context_length ?? 0))
        description.context_length = model.contextTokens;
      for (const endpoint of endpointsOf(engine)) entry.endpoints.add(endpoint);
      for (const feature of engine.servedFeatures ?? allFeatures)
        if (servesFeature(engine, feature)) entry.features.add(feature);
      const replicas = description.capabilities.replicas;
      replicas[engine.type] = (replicas[engine.type] ?? 0) + 1;
    }
  }
  return [...byId.values()].map(({ description, endpoints, features }) => {
    const { capabilities, context_length, ...identity } = description;
    return {
      ...identity,
      // Fields in the order a reader looks for them: what the model is, its window, what it serves.
      ...(context_length === undefined ? {} : { context_length }),
      capabilities: {
        endpoints: [...endpoints],
        // In the order request-features.ts names them, so the list reads the same on every call.
        features: allFeatures.filter((feature) => features.has(feature)),
        replicas: capabilities.replicas,
      },
    };
  });
}

/** `GET /v1/models` and `GET /v1/models/{model}`: ids, `created`, context windows and capabilities. */
export function registerModelRoutes(app: FastifyInstance, gateway: Gateway): void {
  app.get('/v1/models', async () => ({ object: 'list', data: describeModels(gateway) }));
  app.get('/v1/models/:model', async (request, reply) => {
    const { model } = request.params as { model: string };
    const found = describeModels(gateway).find((candidate) => candidate.id === model);
    if (!found) {
      const error = errors.modelNotFound(model);
      return reply.code(error.status).send(error.toBody());
    }
    return found;
  });
}
