import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { requestCaller } from '../admission/request-caller.js';
import { errors, GravityError } from '../core/errors.js';
import { serviceTiers } from '../core/service-tiers.js';
import type { Gateway } from '../gateway/gateway.js';

/** What `POST /v1/routing/explain` accepts: a completion request's routing-relevant fields, plus a tenant. */
const explainSchema = z.object({
  model: z.string().min(1),
  messages: z.array(z.object({ role: z.string(), content: z.string() })).optional(),
  prompt: z.string().optional(),
  max_tokens: z.number().int().min(1).nullable().optional(),
  max_completion_tokens: z.number().int().min(1).nullable().optional(),
  service_tier: z.enum(serviceTiers).optional(),
  /** Whose residency policy applies: admin keys (and open mode) may name any tenant; others get their own. */
  tenant: z.string().min(1).optional(),
});

/**
 * Routing's debug endpoints: `GET /v1/routing/replicas` (labels, health, scraped-signal freshness per
 * replica) and `POST /v1/routing/explain` (which replica would serve a request now and every candidate's
 * scores, without running it). Read-only; they reveal fleet layout and residency policies, so put them
 * behind the same network controls as `/metrics`.
 */
export function registerRoutingRoutes(app: FastifyInstance, gateway: Gateway): void {
  app.get('/v1/routing/replicas', async () => gateway.routingSnapshot());
  app.post('/v1/routing/explain', async (request, reply) => {
    const parsed = explainSchema.safeParse(request.body);
    const caller = requestCaller(request);
    try {
      if (!parsed.success)
        throw errors.invalidRequest(
          parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; '),
        );
      const body = parsed.data;
      const input =
        body.messages !== undefined
          ? {
              kind: 'chat' as const,
              messages: body.messages.map((message) => ({
                role: message.role as 'user',
                content: message.content,
              })),
            }
          : { kind: 'completion' as const, prompt: body.prompt ?? '' };
      return gateway.explainRoute({
        model: body.model,
        input,
        maxTokens: body.max_completion_tokens ?? body.max_tokens ?? null,
        tenant: caller.admin ? (body.tenant ?? caller.tenant) : caller.tenant,
        serviceTier: body.service_tier ?? 'auto',
      });
    } catch (error) {
      const gravityError = error instanceof GravityError ? error : errors.internal();
      return reply.code(gravityError.status).send(gravityError.toBody());
    }
  });
}
