import type { FastifyRequest } from 'fastify';
import { requestTenant as admissionTenant, requestCaller } from '../admission/request-caller.js';
import { errors } from '../core/errors.js';

/**
 * The tenant that owns the files and batches a request creates, and the only one whose files and
 * batches it may read (admin keys included: batches are private to their tenant). Admission's
 * authentication hook names the caller's tenant; in open mode (no keys) every caller is `anonymous`,
 * the tenant the ledger records for unauthenticated requests. The one place to change this rule.
 */
export function requestTenant(request: FastifyRequest): string {
  return admissionTenant(request);
}

/** Creating a batch needs a key allowed the `batch` tier (open mode: anyone). 403 otherwise. */
export function assertMayUseBatchTier(request: FastifyRequest): void {
  const key = requestCaller(request).key;
  if (key && !(key.allowedTiers as readonly string[]).includes('batch'))
    throw errors.tierNotAllowed('batch', key.allowedTiers);
}
