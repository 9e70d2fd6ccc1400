import type { FastifyInstance } from 'fastify';
import type { Admission } from '../admission/admission.js';
import { isLoopbackAddress } from '../admission/loopback.js';
import { openModeCaller, setRequestCaller } from '../admission/request-caller.js';
import { errors } from '../core/errors.js';

/** Routes anyone may call: probes must work without credentials. */
const openRoutes = new Set(['/healthz', '/readyz']);

/**
 * Authenticates every request before its body is read, so a client without a valid key costs no
 * parsing. Failures go through the server's error handler, which gives a completion endpoint its one
 * ledger record (tenant `anonymous`). The caller is stored for routes to read with `requestCaller`.
 *
 * `/metrics` answers loopback clients without a key (a scraper on the same machine); from elsewhere it
 * needs an admin key once keys exist, since its labels name tenants and models.
 */
export function registerAuthentication(app: FastifyInstance, admission: Admission | undefined): void {
  // A callback hook, not an async one: it runs on every request and never waits for anything, so a
  // promise per request would be pure overhead.
  app.addHook('onRequest', (request, _reply, done) => {
    if (!admission) {
      setRequestCaller(request, openModeCaller);
      done();
      return;
    }
    const route = request.routeOptions.url;
    try {
      // Unknown URLs answer 404 whoever asks; probes are open.
      if (route !== undefined && !openRoutes.has(route)) {
        if (route === '/metrics') {
          if (!admission.authenticator.isOpen() && !isLoopbackAddress(request.socket.remoteAddress)) {
            const caller = admission.authenticate(request.headers.authorization);
            if (!caller.admin) throw errors.adminKeyRequired('GET /metrics from another machine');
          }
        } else setRequestCaller(request, admission.authenticate(request.headers.authorization));
      }
    } catch (error) {
      done(error as Error);
      return;
    }
    done();
  });
}
