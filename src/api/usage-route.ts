import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { anonymousTenant } from '../admission/api-key.js';
import { requestCaller } from '../admission/request-caller.js';
import { errors } from '../core/errors.js';
import type { LedgerStore } from '../metering/ledger/ledger-store.js';
import {
  replicaTotalJson,
  type UsageGroupKey,
  usageGroupJson,
  usageGroupKeys,
} from '../metering/usage-report.js';

const usageQuerySchema = z.strictObject({
  /** Unix seconds, inclusive (OpenAI's usage API uses the same names). */
  start_time: z.coerce.number().int().min(0).optional(),
  /** Unix seconds, exclusive. */
  end_time: z.coerce.number().int().min(0).optional(),
  /** Comma-separated, or repeated: tenant, model, tier, engine, hour, day. */
  group_by: z.union([z.string(), z.array(z.string())]).optional(),
  tenant: z.string().optional(),
});

export function parseGroupBy(value: string | string[] | undefined): UsageGroupKey[] {
  const names = (Array.isArray(value) ? value : value === undefined ? [] : [value])
    .flatMap((item) => item.split(','))
    .map((item) => item.trim())
    .filter(Boolean);
  for (const name of names) {
    if (!(usageGroupKeys as readonly string[]).includes(name)) {
      throw errors.invalidRequest(
        `Invalid value for 'group_by': '${name}' (expected ${usageGroupKeys.join(', ')}).`,
        'group_by',
        'invalid_value',
      );
    }
  }
  return names as UsageGroupKey[];
}

/**
 * `GET /v1/usage`: the ledger, grouped and totalled. A tenant's key reads only its own tenant (asking for
 * another is a 403) and not the fleet's replica figures; an admin key (or open mode) reads everything.
 */
export function registerUsageRoute(app: FastifyInstance, ledger: LedgerStore): void {
  app.get('/v1/usage', async (request) => {
    const parsed = usageQuerySchema.safeParse(request.query);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const param =
        issue?.path.join('.') || (issue?.code === 'unrecognized_keys' ? issue.keys[0] : undefined) || null;
      throw errors.invalidRequest(
        `Invalid query parameter${param ? ` '${param}'` : ''}: ${issue?.message ?? 'invalid'}`,
        param,
      );
    }
    const query = parsed.data;
    const groupBy = parseGroupBy(query.group_by);
    const range = {
      fromMs: query.start_time === undefined ? undefined : query.start_time * 1000,
      toMs: query.end_time === undefined ? undefined : query.end_time * 1000,
    };
    const caller = requestCaller(request);
    let tenant = query.tenant;
    if (!caller.admin) {
      const own = caller.tenant ?? anonymousTenant;
      if (tenant !== undefined && tenant !== own)
        throw errors.adminKeyRequired("Reading another tenant's usage");
      tenant = own;
    }
    // The ledger totals in SQL (off the event loop for a file ledger) and may refuse with a 503 when
    // enough summaries are already under way.
    const groups = await ledger.usageSummary({ ...range, tenant }, groupBy);
    const replicas = caller.admin ? await ledger.replicaSummary(range) : [];
    return {
      object: 'list',
      group_by: groupBy,
      data: groups.map(usageGroupJson),
      replicas: replicas.map(replicaTotalJson),
    };
  });
}
