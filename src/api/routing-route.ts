import type { FastifyInstance } from 'fastify';
import { requestCaller } from '../admission/request-caller.js';
import { errors, GravityError } from '../core/errors.js';
import type { Gateway } from '../gateway/gateway.js';
import { parseChatCompletionRequest, parseCompletionRequest } from './request-schemas.js';

/**
 * Routing's debug endpoints: `GET /v1/routing/replicas` (labels, health, scraped-signal freshness per
 * replica) and `POST /v1/routing/explain` (which replica would serve a request now and every candidate's
 * scores, without running it). Read-only, but they reveal the fleet's layout, internal upstream
 * addresses and residency policies: operators' data, so with keys they need an admin key (403
 * otherwise). Open mode has no one to protect (`caller.admin` is true for everyone there).
 */
export function registerRoutingRoutes(app: FastifyInstance, gateway: Gateway): void {
  app.get('/v1/routing/replicas', async (request, reply) => {
    if (!requestCaller(request).admin) {
      const error = errors.adminKeyRequired('GET /v1/routing/replicas');
      return reply.code(error.status).send(error.toBody());
    }
    return gateway.routingSnapshot();
  });
  app.post('/v1/routing/explain', async (request, reply) => {
    const caller = requestCaller(request);
    try {
      if (!caller.admin) throw errors.adminKeyRequired('POST /v1/routing/explain');
      // The body is a completion request as the endpoints take it (so its features count), plus `tenant`:
      // the residency policy of which tenant to apply (the caller's own by default).
      const object = request.body;
      if (object === null || typeof object !== 'object' || Array.isArray(object))
        throw errors.invalidRequest('The request body must be a JSON object.');
      const { tenant, ...body } = object as Record<string, unknown>;
      if (tenant !== undefined && (typeof tenant !== 'string' || tenant === ''))
        throw errors.invalidRequest(
          "Invalid type for 'tenant': expected a string.",
          'tenant',
          'invalid_type',
        );
      const parsed = 'messages' in body ? parseChatCompletionRequest(body) : parseCompletionRequest(body);
      const generation = parsed.generation;
      return gateway.explainRoute({
        model: generation.model,
        input: generation.input,
        maxTokens: generation.maxTokens,
        features: generation.features,
        options: generation.options,
        tenant: (tenant as string | undefined) ?? caller.tenant,
        serviceTier: parsed.serviceTier,
      });
    } catch (error) {
      const gravityError = error instanceof GravityError ? error : errors.internal();
      return reply.code(gravityError.status).send(gravityError.toBody());
    }
  });
}
