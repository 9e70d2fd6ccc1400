import type { FastifyInstance } from 'fastify';
import type { Admission } from '../admission/admission.js';
import { isLoopbackAddress } from '../admission/loopback.js';
import { openModeCaller, setRequestCaller } from '../admission/request-caller.js';
import { errors, GravityError } from '../core/errors.js';
import type { PrometheusMetrics } from '../metering/prometheus-metrics.js';

/** Routes anyone may call: probes must work without credentials. */
const openRoutes = new Set(['/healthz', '/readyz']);

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * The route answers without a key: it serves nothing a key protects (the dashboard's page and
     * scripts, whose data comes from routes that do need one). Set by routes registered outside this folder.
     */
    openToAll?: boolean;
  }
}

export interface AuthenticationOptions {
  /** Counts the requests refused for their key (`gravity_auth_failures_total`). */
  metrics: PrometheusMetrics;
  /** `/metrics` needs an admin key from every client, loopback included (`metrics.requireAdminKey`). */
  metricsRequireAdminKey: boolean;
}

/**
 * Authenticates every request before its body is read, so a client without a valid key costs no
 * parsing. The caller is stored for routes to read with `requestCaller`.
 *
 * A request refused for its key (401) is answered here and goes no further: it never enters the
 * pipeline, so it writes no ledger row (a client without a key could otherwise fill the disk at the
 * rate it can send); it is counted in `gravity_auth_failures_total` instead. Other refusals (403 for a
 * non-admin key on an admin route) go through the error handler.
 *
 * `/metrics` answers loopback clients without a key (a scraper on the same machine) unless
 * `metricsRequireAdminKey`; from elsewhere it needs an admin key once keys exist, since its labels name
 * tenants and models.
 */
export function registerAuthentication(
  app: FastifyInstance,
  admission: Admission | undefined,
  options: AuthenticationOptions,
): void {
  // A callback hook, not an async one: it runs on every request and never waits for anything, so a
  // promise per request would be pure overhead.
  app.addHook('onRequest', (request, reply, done) => {
    if (!admission) {
      setRequestCaller(request, openModeCaller);
      done();
      return;
    }
    const route = request.routeOptions.url;
    const authorization = request.headers.authorization;
    try {
      // Unknown URLs answer 404 whoever asks; probes are open.
      if (route !== undefined && !openRoutes.has(route) && request.routeOptions.config.openToAll !== true) {
        if (route === '/metrics') {
          if (
            !admission.authenticator.isOpen() &&
            (options.metricsRequireAdminKey || !isLoopbackAddress(request.socket.remoteAddress))
          ) {
            const caller = admission.authenticate(authorization);
            if (!caller.admin) throw errors.adminKeyRequired('GET /metrics');
          }
        } else setRequestCaller(request, admission.authenticate(authorization));
      }
    } catch (error) {
      if (error instanceof GravityError && error.status === 401) {
        options.metrics.countAuthFailure(authorization === undefined ? 'missing_key' : 'invalid_key');
        reply.code(401).send(error.toBody());
        return;
      }
      done(error as Error);
      return;
    }
    done();
  });
}
