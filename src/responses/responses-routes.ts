import type { FastifyInstance } from 'fastify';
import { requestTenant } from '../admission/request-caller.js';
import type { Clock } from '../core/clock.js';
import { errors } from '../core/errors.js';
import type { RequestPipeline } from '../pipeline/request-pipeline.js';
import type { ResponseStore } from './response-store.js';
import { responsesCreateHandler } from './responses-handler.js';

/**
 * The Responses API's routes: create (through the request pipeline), and retrieve, delete and list the
 * input items of a stored response. A response belongs to the tenant that created it, admin keys
 * included: another tenant's id answers 404 as an unknown one does.
 */
export function registerResponsesRoutes(
  app: FastifyInstance,
  options: { pipeline: RequestPipeline; clock: Clock; store: ResponseStore; writeStallTimeoutMs: number },
): void {
  const { store } = options;
  const found = async (request: object, id: string) => {
    const stored = await store.get(requestTenant(request), id);
    if (!stored) throw errors.responseNotFound(id);
    return stored;
  };

  app.post('/v1/responses', responsesCreateHandler(options));

  app.get('/v1/responses/:id', async (request) => {
    const { id } = request.params as { id: string };
    const query = request.query as { stream?: string };
    if (query.stream === 'true')
      throw errors.unsupportedParameter(
        'stream',
        'is not served on retrieve: Gravity does not replay streams.',
      );
    return (await found(request, id)).response;
  });

  app.delete('/v1/responses/:id', async (request) => {
    const { id } = request.params as { id: string };
    if (!(await store.delete(requestTenant(request), id))) throw errors.responseNotFound(id);
    return { id, object: 'response', deleted: true };
  });

  app.get('/v1/responses/:id/input_items', async (request) => {
    const { id } = request.params as { id: string };
    const query = request.query as { limit?: string; order?: string; after?: string };
    const limit = query.limit === undefined ? 20 : Number(query.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 100)
      throw errors.invalidRequest(
        `Invalid 'limit': expected an integer between 1 and 100, but got ${JSON.stringify(query.limit)} instead.`,
        'limit',
        'invalid_value',
      );
    const order = query.order ?? 'desc';
    if (order !== 'asc' && order !== 'desc')
      throw errors.invalidRequest(
        `Invalid value for 'order': ${JSON.stringify(order)}. Supported values are: "asc", "desc".`,
        'order',
        'invalid_value',
      );
    const items = (await found(request, id)).inputItems;
    const ordered = order === 'asc' ? items : [...items].reverse();
    let start = 0;
    if (query.after !== undefined) {
      const index = ordered.findIndex((item) => item.id === query.after);
      if (index < 0)
        throw errors.invalidRequest(
          `No input item with id '${query.after}' in this response.`,
          'after',
          'invalid_value',
        );
      start = index + 1;
    }
    const page = ordered.slice(start, start + limit);
    return {
      object: 'list',
      data: page,
      first_id: (page[0]?.id as string | undefined) ?? null,
      last_id: (page.at(-1)?.id as string | undefined) ?? null,
      has_more: start + limit < ordered.length,
    };
  });
}
