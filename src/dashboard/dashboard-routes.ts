import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { requestCaller } from '../admission/request-caller.js';
import type { Clock } from '../core/clock.js';
import { errors, GravityError } from '../core/errors.js';
import { type ServiceBand, serviceBands } from '../core/service-tiers.js';
import type { Gateway } from '../gateway/gateway.js';
import type { DashboardSnapshotJson, ReplicaJson } from './dashboard-snapshot.js';
import type { RecentRequests } from './recent-requests.js';

/**
 * Where `npm run build` (scripts/build-dashboard.mjs) writes the page: dist/dashboard-ui under the
 * package root, which is two folders up both from this source file and from its build (dist/dashboard/).
 */
export const builtDashboardDirectory = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../dist/dashboard-ui',
);

/** The built files the page is made of, by URL name: nothing else under the folder is ever served. */
const assetTypes: Readonly<Record<string, string>> = {
  'dashboard.js': 'text/javascript; charset=utf-8',
  'dashboard.css': 'text/css; charset=utf-8',
};

/**
 * The page loads its own script, style and data and nothing else: the API's `default-src 'none'`
 * loosened to same-origin scripts, styles and fetches. uPlot sizes its elements through the CSSOM,
 * which `style-src` does not govern.
 */
const pageSecurityPolicy =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

export interface DashboardRoutesOptions {
  gateway: Gateway;
  clock: Clock;
  recent: RecentRequests;
  /** Each tier's targets (`tiers` in the config): the SLO lines. */
  tiers: Readonly<Record<ServiceBand, { ttftMs: number; tpotMs: number }>>;
  /** Whether `/v1/usage` exists (metering on): without it the page has no history to offer. */
  ledger: boolean;
  /** The built page; default `builtDashboardDirectory`. */
  directory?: string | undefined;
}

/**
 * `GET /dashboard` (the page, open to everyone: it holds no data), its built assets, and
 * `GET /v1/dashboard/snapshot` (live figures; an admin key once keys exist, as `/v1/routing/*`). The page
 * reads everything else from the API it documents (`/v1/usage`), so what it shows is what the API says.
 */
export function registerDashboardRoutes(app: FastifyInstance, options: DashboardRoutesOptions): void {
  const directory = options.directory ?? builtDashboardDirectory;
  const files = new Map<string, Buffer>();
  // Read once, on first use: the files do not change under a running server, and a missing build is
  // reported per request (503) rather than keeping Gravity from starting.
  const builtFile = (name: string): Buffer => {
    let content = files.get(name);
    if (!content) {
      try {
        content = readFileSync(path.join(directory, name));
      } catch {
        throw new GravityError({
          status: 503,
          type: 'service_unavailable',
          code: 'dashboard_not_built',
          message: `The dashboard is not built (${path.join(directory, name)} is missing): run \`npm run build\`.`,
        });
      }
      files.set(name, content);
    }
    return content;
  };

  app.get('/dashboard', { config: { openToAll: true } }, async (_request, reply) => {
    const page = builtFile('index.html');
    return reply
      .header('content-type', 'text/html; charset=utf-8')
      .header('content-security-policy', pageSecurityPolicy)
      .send(page);
  });
  app.get<{ Params: { name: string } }>(
    '/dashboard/assets/:name',
    { config: { openToAll: true } },
    async (request, reply) => {
      const type = assetTypes[request.params.name];
      if (!type) throw errors.notFound('GET', request.url);
      return reply.header('content-type', type).send(builtFile(request.params.name));
    },
  );

  app.get<{ Querystring: { after?: string } }>('/v1/dashboard/snapshot', async (request) => {
    if (!requestCaller(request).admin) throw errors.adminKeyRequired('GET /v1/dashboard/snapshot');
    const after = Number(request.query.after ?? 0);
    if (!Number.isSafeInteger(after) || after < 0)
      throw errors.invalidRequest(
        "Invalid query parameter 'after': expected a non-negative integer.",
        'after',
        'invalid_value',
      );
    const snapshot: DashboardSnapshotJson = {
      object: 'dashboard.snapshot',
      now_ms: options.clock.epochMs(),
      ledger: options.ledger,
      tiers: serviceBands.map((tier) => ({
        tier,
        ttft_target_ms: options.tiers[tier].ttftMs,
        itl_target_ms: options.tiers[tier].tpotMs,
      })),
      queues: options.recent.queues(),
      replicas: replicas(options.gateway),
      requests: options.recent.after(after),
      last_sequence: options.recent.lastSequence,
    };
    return snapshot;
  });
}

function replicas(gateway: Gateway): ReplicaJson[] {
  const health = new Map(gateway.routingSnapshot().replicas.map((replica) => [replica.id, replica.health]));
  return gateway.engines.map((engine) => {
    const load = engine.load();
    const counters = engine.extensions?.counters?.();
    const circuit = health.get(engine.id);
    return {
      id: engine.id,
      health: circuit?.state ?? 'closed',
      last_error: circuit?.lastError ?? null,
      slots_busy: load.slotsBusy,
      slots_total: load.slotsTotal,
      waiting: load.waiting,
      kv_used_fraction: load.kvUsedFraction ?? null,
      prefix_hit_rate:
        counters && counters.prefixCacheQueriedTokens > 0
          ? counters.prefixCacheHitTokens / counters.prefixCacheQueriedTokens
          : null,
    };
  });
}
