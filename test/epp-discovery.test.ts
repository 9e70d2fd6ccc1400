import { Resolver } from 'node:dns/promises';
import * as grpc from '@grpc/grpc-js';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DnsEndpointDiscovery, dnsAddressResolver } from '../src/epp/dns-endpoint-discovery.js';
import { eppEngineId } from '../src/epp/epp-config.js';
import {
  extProcServices,
  type ProcessingRequest,
  type ProcessingResponse,
} from '../src/epp/ext-proc-protocol.js';
import { type DnsServer, startDnsServer } from './support/dns-server.js';
import { destinationList, EnvoyStream, type ProcessCall, requestHeaders } from './support/envoy-ext-proc.js';
import { type Harness, startHarness } from './support/gravity-harness.js';
import { type LoopbackModelServer, startLoopbackModelServer } from './support/loopback-model-server.js';

// The Endpoint Picker's endpoints named by DNS (a headless Service in Kubernetes): a real DNS server on
// loopback answers for the name, model servers listen on several loopback addresses (127.0.0.2, .3, ...)
// at one port, and a gRPC client plays Envoy against a live EPP whose discovery resolves that name.

const model = 'llama-dns';
const serviceName = 'vllm.inference.svc.cluster.local';
const intervalMs = 150;
const buffered = 2;

const startModelServer = (ip: string, port: number) => startLoopbackModelServer(model, ip, port);

const chatBody = (content: string) =>
  JSON.stringify({ model, messages: [{ role: 'user', content }], max_tokens: 8 });

/** A buffered chat request's headers, optionally with Envoy's subset hint. */
const headers = (subset?: string[]): ProcessingRequest =>
  requestHeaders('/v1/chat/completions', { bodyMode: buffered, ...(subset !== undefined && { subset }) });

let dns: DnsServer;
let servers: Array<LoopbackModelServer>;
let port: number;
let harness: Harness;
let client: grpc.Client & { Process(): ProcessCall };
const address = (ip: string) => `${ip}:${port}`;

/** Opens a stream and sends one buffered chat request; the answer to its body is the EPP's pick. */
async function pick(
  content: string,
  subset?: string[],
): Promise<{ envoy: EnvoyStream; answer: ProcessingResponse }> {
  const envoy = new EnvoyStream(client.Process());
  envoy.send(headers(subset));
  await envoy.next();
  envoy.send({ request_body: { body: Buffer.from(chatBody(content)), end_of_stream: true } });
  return { envoy, answer: await envoy.next() };
}

/** Every endpoint a few picks name (pick or fallback); each stream ends at once, releasing its slot. */
async function pickable(): Promise<Set<string>> {
  const seen = new Set<string>();
  for (let index = 0; index < 3; index++) {
    const { envoy, answer } = await pick(`which endpoint ${index} ${Math.random()}`);
    envoy.call.cancel();
    const list = destinationList(answer);
    if (typeof list !== 'number') for (const entry of list) seen.add(entry);
  }
  return seen;
}

async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

function ledgerEngines(path: string): string[] {
  const ledger = new Database(path, { readonly: true });
  try {
    return (ledger.prepare('SELECT engine FROM usage_records').all() as Array<{ engine: string }>).map(
      (row) => row.engine,
    );
  } finally {
    ledger.close();
  }
}

/** A resolver that asks only the loopback DNS server, once, quickly. */
function loopbackResolver(server: DnsServer): Resolver {
  const resolver = new Resolver({ timeout: 300, tries: 1 });
  resolver.setServers([server.address]);
  return resolver;
}

beforeAll(async () => {
  // One port on several loopback addresses: DNS names addresses, the port is the config's.
  const first = await startModelServer('127.0.0.2', 0);
  port = first.port;
  servers = [first, await startModelServer('127.0.0.3', port), await startModelServer('127.0.0.4', port)];
  dns = await startDnsServer(serviceName, ['127.0.0.2', '127.0.0.3']);
  harness = await startHarness(
    () => {},
    {
      engines: {},
      models: {},
      epp: {
        port: 0,
        models: [model],
        // One request at a time per endpoint: a second one waits in Gravity's queue for it.
        maxConcurrentRequestsPerEndpoint: 1,
        discovery: { dns: { name: serviceName, port, intervalMs } },
      },
    },
    { resolveEndpointAddresses: dnsAddressResolver(loopbackResolver(dns)) },
  );
  const services = extProcServices();
  const Client = grpc.makeGenericClientConstructor(services.extProc, 'Epp');
  const grpcClient = new Client(harness.server.eppAddress as string, grpc.credentials.createInsecure());
  client = grpcClient as unknown as typeof client;
});

afterAll(async () => {
  client?.close();
  await harness?.close();
  await dns?.close();
  await Promise.all((servers ?? []).map((server) => server.close()));
});

describe('Endpoint Picker: endpoints from DNS', () => {
  it('picks among the endpoints the DNS name resolves to', async () => {
    expect(await pickable()).toEqual(new Set([address('127.0.0.2'), address('127.0.0.3')]));
  });

  it('makes an address added to the DNS answer pickable within a couple of intervals', async () => {
    dns.addresses = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];
    await waitFor(async () => (await pickable()).has(address('127.0.0.4')), 20 * intervalMs + 2000);
  });

  it('stops picking an address gone from DNS, while a request placed on it completes and is metered', async () => {
    const leaving = address('127.0.0.3');
    // Placed on the endpoint that will leave (the subset hint), its response not yet through the EPP.
    const { envoy, answer } = await pick('placed before it left', [leaving]);
    expect(destinationList(answer)).toEqual([leaving]);
    // A second one waits in Gravity's queue for the endpoint's one slot.
    const waiting = new EnvoyStream(client.Process());
    waiting.send(headers([leaving]));
    await waiting.next();
    waiting.send({
      request_body: { body: Buffer.from(chatBody('queued when it left')), end_of_stream: true },
    });
    const waitingAnswer = waiting.next(20 * intervalMs + 4000);
    dns.addresses = ['127.0.0.2', '127.0.0.4'];
    // Refused once the endpoint retires, not left waiting for a slot it will never get.
    expect(destinationList(await waitingAnswer)).toBe(503);
    waiting.call.cancel();
    await waitFor(async () => !(await pickable()).has(leaving), 20 * intervalMs + 2000);
    // Out of the picks, but its engine stays until the request placed on it has ended.
    expect(harness.server.gateway.engines.map((engine) => engine.id)).toContain(eppEngineId(leaving));

    const response = await fetch(`http://${leaving}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: chatBody('placed before it left'),
    });
    const bytes = Buffer.from(await response.arrayBuffer());
    const served = {
      filter_metadata: {
        'envoy.lb': { fields: { 'x-gateway-destination-endpoint-served': { stringValue: leaving } } },
      },
    };
    envoy.send({
      response_headers: {
        headers: {
          headers: [
            { key: ':status', raw_value: Buffer.from(String(response.status)) },
            { key: 'content-type', raw_value: Buffer.from('application/json') },
          ],
        },
      },
      metadata_context: served,
    });
    expect((await envoy.next()).response_headers).toBeDefined();
    envoy.send({ response_body: { body: bytes, end_of_stream: true }, metadata_context: served });
    expect((await envoy.next()).response_body).toBeDefined();
    envoy.call.end();
    await waitFor(() => ledgerEngines(harness.ledgerPath).includes(eppEngineId(leaving)));
    // Its last request over, the endpoint is removed and its engine closed.
    await waitFor(() => !harness.server.gateway.engines.some((engine) => engine.id === eppEngineId(leaving)));
  });

  it('keeps the endpoints while DNS fails', async () => {
    const before = await pickable();
    dns.failing = true;
    const queries = dns.queries;
    // Several failed resolutions: more than the two that would retire an endpoint missing from answers.
    await waitFor(() => dns.queries >= queries + 6, 40 * intervalMs + 2000);
    expect(await pickable()).toEqual(before);
    dns.failing = false;
  });
});

describe('DNS endpoint discovery', () => {
  it('retires an address only when two resolutions in a row miss it, and keeps the set through failures', async () => {
    const server = await startDnsServer('pods.test.local', ['10.0.0.1', '10.0.0.2']);
    const joined: string[] = [];
    const left: string[] = [];
    const logged: string[] = [];
    const discovery = new DnsEndpointDiscovery({
      name: 'pods.test.local',
      port: 8000,
      intervalMs: 60_000,
      resolve: dnsAddressResolver(loopbackResolver(server)),
      fixed: new Set(['10.0.0.9:8000']),
      join: async (endpoint) => {
        joined.push(endpoint);
      },
      leave: async (endpoint) => {
        left.push(endpoint);
      },
      log: (message) => logged.push(message),
    });
    try {
      await discovery.resolveNow();
      expect(joined).toEqual(['10.0.0.1:8000', '10.0.0.2:8000']);
      // A flapping answer: missing once, back the next time; nothing leaves.
      server.addresses = ['10.0.0.1'];
      await discovery.resolveNow();
      server.addresses = ['10.0.0.1', '10.0.0.2', '10.0.0.9'];
      await discovery.resolveNow();
      expect(left).toEqual([]);
      // A static endpoint DNS also names is not joined twice.
      expect(joined).toEqual(['10.0.0.1:8000', '10.0.0.2:8000']);
      // Failures count as no answer, not as an empty one, and are logged once per outage.
      server.failing = true;
      for (let index = 0; index < 3; index++) await discovery.resolveNow();
      expect(left).toEqual([]);
      expect(logged).toHaveLength(1);
      server.failing = false;
      server.addresses = ['10.0.0.1'];
      await discovery.resolveNow();
      expect(left).toEqual([]);
      await discovery.resolveNow();
      expect(left).toEqual(['10.0.0.2:8000']);
      expect(discovery.endpoints).toEqual(['10.0.0.1:8000']);
      // A name with no records at all (every pod gone) is an answer: its endpoints leave.
      server.addresses = [];
      await discovery.resolveNow();
      await discovery.resolveNow();
      expect(left).toEqual(['10.0.0.2:8000', '10.0.0.1:8000']);
    } finally {
      discovery.close();
      await server.close();
    }
  });
});
