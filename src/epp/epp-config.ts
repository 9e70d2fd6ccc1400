import { isIP } from 'node:net';
import { z } from 'zod';
import { defaults } from '../core/defaults.js';

/** `ip:port` (IPv6 in brackets) or `host:port`, as Envoy's original-destination cluster takes it. */
const endpointAddressSchema = z.string().superRefine((address, context) => {
  const problem = endpointAddressProblem(address);
  if (problem !== null) context.addIssue({ code: 'custom', message: problem });
});

function endpointAddressProblem(address: string): string | null {
  const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/.exec(address);
  if (!match) return 'expected ip:port (IPv6 as [addr]:port)';
  const host = match[1] as string;
  if (host.startsWith('[') && isIP(host.slice(1, -1)) !== 6) return `'${host}' is not an IPv6 address`;
  if (Number(match[2]) > 65_535) return 'port above 65535';
  return null;
}

/**
 * Endpoints found at run time, from one source: the A and AAAA records of a DNS name (in Kubernetes, a
 * headless Service's name lists its ready pods), each address with `port`, resolved every `intervalMs`;
 * or a Kubernetes watch of an InferencePool and the ready pods its selector matches.
 */
const eppDiscoverySchema = z
  .strictObject({
    dns: z
      .strictObject({
        /** The name to resolve, e.g. `vllm.inference.svc.cluster.local`. */
        name: z.string().min(1),
        /** The model servers' port (DNS A records carry no port). */
        port: z.number().int().min(1).max(65_535),
        intervalMs: z.number().int().min(100).default(defaults.epp.discoveryIntervalMs),
      })
      .optional(),
    kubernetes: z
      .strictObject({
        /** The namespace of the InferencePool and its pods. */
        namespace: z.string().min(1),
        /** The InferencePool's name: its selector picks the pods, its targetPorts their ports. */
        inferencePool: z.string().min(1),
        /** A kubeconfig file; absent: the pod's own ServiceAccount (in-cluster config). */
        kubeconfig: z.string().min(1).optional(),
      })
      .optional(),
  })
  .refine((discovery) => (discovery.dns === undefined) !== (discovery.kubernetes === undefined), {
    message: 'give exactly one discovery source: `dns` or `kubernetes`',
  });

/**
 * The Endpoint Picker (src/epp/): Envoy's ext_proc service on its own port, picking one of its endpoints
 * (OpenAI-compatible model servers Envoy forwards to) for each request: a static `endpoints` list, the
 * ones `discovery` finds, or both (the static ones are always members). Absent: no EPP.
 */
export const eppConfigSchema = z
  .strictObject({
    /** The ext_proc gRPC port (`gravity serve --ext-proc-port`); absent: the EPP does not listen. */
    port: z.number().int().min(0).max(65_535).optional(),
    /** Its address: loopback unless the Envoy gateway runs elsewhere (in a cluster, `0.0.0.0`). */
    host: z.string().min(1).default(defaults.host),
    /** The model servers Envoy may send requests to, as `ip:port`; each becomes an upstream engine. */
    endpoints: z.array(endpointAddressSchema).default([]),
    /** Endpoints that come and go at run time, besides `endpoints`. */
    discovery: eppDiscoverySchema.optional(),
    /** The models every endpoint serves (the InferencePool's), as clients name them in `model`. */
    models: z.array(z.string().min(1)).min(1),
    /** Requests Gravity lets run at once on each endpoint (its queue lets the rest wait or sheds them). */
    maxConcurrentRequestsPerEndpoint: z
      .number()
      .int()
      .min(1)
      .default(defaults.upstream.maxConcurrentRequests),
  })
  .refine((epp) => epp.endpoints.length > 0 || epp.discovery !== undefined, {
    message: 'give the EPP its endpoints: a static `endpoints` list, `discovery`, or both',
    path: ['endpoints'],
  })
  .optional();

export type EppConfig = NonNullable<z.infer<typeof eppConfigSchema>>;

/**
 * The engine id an endpoint runs under: engine ids take no colons or brackets, and the EPP maps ids
 * back to addresses with the list it was configured with, so the id only needs to be unique and stable.
 */
export function eppEngineId(address: string): string {
  return `epp-${address.replace(/[[\]]/g, '').replace(/:/g, '-')}`;
}

/**
 * The engine config of one endpoint, as `withEndpointPickerEngines` writes it into the document: also
 * what an endpoint found at run time is created from (validated there, to get the schema's defaults).
 */
export function eppEngineConfig(
  epp: Pick<EppConfig, 'maxConcurrentRequestsPerEndpoint'>,
  address: string,
): Record<string, unknown> {
  return {
    type: 'openai-upstream',
    baseUrl: `http://${address}/v1`,
    maxConcurrentRequests: epp.maxConcurrentRequestsPerEndpoint,
  };
}

/**
 * Adds an `openai-upstream` engine for each EPP endpoint and lists the endpoints among the replicas of
 * each EPP model, on the raw config document before it is validated (so the engines get their schema's
 * defaults): the endpoints then share everything the fleet core does for any replica — queues, health
 * probes, prefix affinity, routing profiles. A document whose `epp` is not valid is left alone; validation
 * then reports it with its path.
 */
export function withEndpointPickerEngines(document: Record<string, unknown>): void {
  const parsed = eppConfigSchema.safeParse(document.epp);
  if (!parsed.success || parsed.data === undefined) return;
  const epp = parsed.data;
  const engines = objectAt(document, 'engines');
  const models = objectAt(document, 'models');
  const ids = epp.endpoints.map((address) => {
    const id = eppEngineId(address);
    engines[id] ??= eppEngineConfig(epp, address);
    return id;
  });
  // Endpoints found only at run time get their engines then (dns-endpoint-discovery.ts): a model entry
  // with no engine yet would not validate, and the fleet core learns the model from its first endpoint.
  if (ids.length === 0) return;
  for (const model of epp.models) {
    const entry = models[model];
    if (entry === undefined) {
      models[model] = { engines: ids };
      continue;
    }
    if (entry === null || typeof entry !== 'object') continue;
    // A model also served by engines of its own keeps them: the HTTP API may route to either kind.
    const { engine, engines: listed, ...rest } = entry as Record<string, unknown>;
    const existing = Array.isArray(listed) ? listed : typeof engine === 'string' ? [engine] : [];
    models[model] = { ...rest, engines: [...existing, ...ids.filter((id) => !existing.includes(id))] };
  }
}

function objectAt(document: Record<string, unknown>, key: string): Record<string, unknown> {
  const value = document[key];
  if (value !== null && typeof value === 'object' && !Array.isArray(value))
    return value as Record<string, unknown>;
  const created: Record<string, unknown> = {};
  document[key] = created;
  return created;
}
