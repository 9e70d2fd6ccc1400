import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  extProcServices,
  type ProcessingRequest,
  type ProcessingResponse,
} from '../src/epp/ext-proc-protocol.js';
import { EnvoyStream, type ProcessCall, requestHeaders } from './support/envoy-ext-proc.js';
import { type Harness, startHarness } from './support/gravity-harness.js';
import { startLoopbackModelServer } from './support/loopback-model-server.js';

// The Endpoint Picker's endpoints from a Kubernetes watch of an InferencePool and its pods. No cluster
// runs here: a loopback HTTP server speaks the API server's list and watch protocol for exactly those
// two resources (lists carry a resourceVersion; a watch replays the changes after the one it names, then
// streams JSON lines of {type, object}), and a kubeconfig file points the client at it. Model servers
// listen on 127.0.0.2/.3/.4, which stand for the pods' IPs.

const model = 'llama-k8s';
const namespace = 'inference';
const poolName = 'vllm-pool';
const poolsPath = `/apis/inference.networking.k8s.io/v1/namespaces/${namespace}/inferencepools`;
const podsPath = `/api/v1/namespaces/${namespace}/pods`;
const buffered = 2;

type Resource = 'pools' | 'pods';
interface ApiObject {
  metadata: { name: string; namespace?: string; resourceVersion?: string; labels?: Record<string, string> };
  [key: string]: unknown;
}
interface WatchEvent {
  resourceVersion: number;
  resource: Resource;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: ApiObject;
}

/** An API server for one namespace's InferencePools and Pods: list, and watch from a resourceVersion. */
class FakeKubernetesApi {
  readonly objects: Record<Resource, Map<string, ApiObject>> = { pools: new Map(), pods: new Map() };
  private readonly history: WatchEvent[] = [];
  private readonly watchers = new Set<{
    resource: Resource;
    query: URLSearchParams;
    response: ServerResponse;
  }>();
  private resourceVersion = 1;
  /** While true, open watches are cut and every request is answered 503. */
  private unavailable = false;
  refused = 0;
  readonly server: Server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    const resource: Resource | undefined =
      url.pathname === poolsPath ? 'pools' : url.pathname === podsPath ? 'pods' : undefined;
    if (this.unavailable || resource === undefined || request.method !== 'GET') {
      if (this.unavailable) this.refused++;
      response.writeHead(resource === undefined ? 404 : 503, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ kind: 'Status', status: 'Failure', code: 503 }));
      return;
    }
    const query = url.searchParams;
    response.setHeader('content-type', 'application/json');
    if (query.get('watch') === 'true' || query.get('watch') === '1') {
      response.writeHead(200);
      // A watch answers its headers at once; the changes follow as they happen.
      response.flushHeaders();
      const since = Number(query.get('resourceVersion') || 0);
      for (const event of this.history)
        if (event.resourceVersion > since && event.resource === resource && matches(query, event.object))
          response.write(`${JSON.stringify({ type: event.type, object: event.object })}\n`);
      const watcher = { resource, query, response };
      this.watchers.add(watcher);
      response.on('close', () => this.watchers.delete(watcher));
      return;
    }
    const items = [...this.objects[resource].values()].filter((object) => matches(query, object));
    response.end(
      JSON.stringify({
        apiVersion: resource === 'pods' ? 'v1' : 'inference.networking.k8s.io/v1',
        kind: resource === 'pods' ? 'PodList' : 'InferencePoolList',
        metadata: { resourceVersion: String(this.resourceVersion) },
        items,
      }),
    );
  });

  /** Stores (or deletes) an object and streams the change to the watches it matches. */
  change(resource: Resource, type: WatchEvent['type'], object: ApiObject): void {
    this.resourceVersion++;
    const stored = {
      ...object,
      metadata: { ...object.metadata, namespace, resourceVersion: String(this.resourceVersion) },
    };
    if (type === 'DELETED') this.objects[resource].delete(object.metadata.name);
    else this.objects[resource].set(object.metadata.name, stored);
    this.history.push({ resourceVersion: this.resourceVersion, resource, type, object: stored });
    for (const watcher of this.watchers)
      if (watcher.resource === resource && matches(watcher.query, stored))
        watcher.response.write(`${JSON.stringify({ type, object: stored })}\n`);
  }

  set down(down: boolean) {
    this.unavailable = down;
    if (down) for (const watcher of this.watchers) watcher.response.destroy();
  }

  close(): Promise<void> {
    for (const watcher of this.watchers) watcher.response.destroy();
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** Equality label and field selectors, as the client sends them (`a=b,c=d`). */
function matches(query: URLSearchParams, object: ApiObject): boolean {
  const terms = (selector: string | null) =>
    (selector ?? '')
      .split(',')
      .filter(Boolean)
      .map((term) => term.split('=') as [string, string]);
  const labels = object.metadata.labels ?? {};
  if (!terms(query.get('labelSelector')).every(([key, value]) => labels[key] === value)) return false;
  return terms(query.get('fieldSelector')).every(
    ([key, value]) => key !== 'metadata.name' || object.metadata.name === value,
  );
}

function pool(targetPorts: number[]): ApiObject {
  return {
    apiVersion: 'inference.networking.k8s.io/v1',
    kind: 'InferencePool',
    metadata: { name: poolName },
    spec: {
      selector: { matchLabels: { app: 'vllm' } },
      targetPorts: targetPorts.map((number) => ({ number })),
      endpointPickerRef: { name: 'gravity-epp', port: { number: 9002 } },
    },
  };
}

function pod(
  name: string,
  ip: string,
  state: { ready?: boolean; deleting?: boolean; app?: string } = {},
): ApiObject {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      labels: { app: state.app ?? 'vllm' },
      ...(state.deleting && { deletionTimestamp: new Date().toISOString() }),
    },
    spec: { containers: [{ name: 'vllm', image: 'vllm/vllm-openai' }] },
    status: {
      phase: 'Running',
      podIP: ip,
      conditions: [{ type: 'Ready', status: state.ready === false ? 'False' : 'True' }],
    },
  };
}

const startModelServer = (ip: string, port: number) => startLoopbackModelServer(model, ip, port);

const headers = (): ProcessingRequest => requestHeaders('/v1/chat/completions', { bodyMode: buffered });
const chatBody = (content: string) =>
  JSON.stringify({ model, messages: [{ role: 'user', content }], max_tokens: 8 });

/** The destination list of an answer (the pick, then its fallbacks), or the status of a refusal. */
function destination(answer: ProcessingResponse): string[] | number {
  if (answer.immediate_response) return answer.immediate_response.status.code;
  const header = answer.request_body?.response?.header_mutation?.set_headers?.find(
    (option) => option.header.key === 'x-gateway-destination-endpoint',
  )?.header;
  return (header?.raw_value?.toString('utf8') || header?.value || '').split(',');
}

let api: FakeKubernetesApi;
let modelServers: Array<{ close(): Promise<void> }>;
let port: number;
let secondPort: number;
let harness: Harness;
let client: grpc.Client & { Process(): ProcessCall };
const at = (ip: string, onPort = port) => `${ip}:${onPort}`;

/** Every endpoint a few picks name (pick or fallback); each stream ends at once, releasing its slot. */
async function pickable(): Promise<Set<string>> {
  const seen = new Set<string>();
  for (let index = 0; index < 4; index++) {
    const envoy = new EnvoyStream(client.Process());
    envoy.send(headers());
    await envoy.next();
    envoy.send({
      request_body: { body: Buffer.from(chatBody(`which ${Math.random()}`)), end_of_stream: true },
    });
    const list = destination(await envoy.next());
    envoy.call.cancel();
    if (typeof list !== 'number') for (const entry of list) seen.add(entry);
  }
  return seen;
}

/** Waits until the picks name exactly `expected`. */
async function pickableBecomes(expected: string[], timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let seen = new Set<string>();
  while (Date.now() < deadline) {
    seen = await pickable();
    if (seen.size === expected.length && expected.every((entry) => seen.has(entry))) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  expect([...seen].sort()).toEqual([...expected].sort());
}

async function waitFor(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

beforeAll(async () => {
  // Two ports on each pod address: a pool may name up to 8 target ports, each a separate endpoint.
  const first = await startModelServer('127.0.0.2', 0);
  port = first.port;
  const firstOfSecond = await startModelServer('127.0.0.2', 0);
  secondPort = firstOfSecond.port;
  modelServers = [first, firstOfSecond];
  for (const ip of ['127.0.0.3', '127.0.0.4'])
    modelServers.push(await startModelServer(ip, port), await startModelServer(ip, secondPort));

  api = new FakeKubernetesApi();
  await new Promise<void>((resolve) => api.server.listen(0, '127.0.0.1', resolve));
  api.change('pools', 'ADDED', pool([port]));
  api.change('pods', 'ADDED', pod('vllm-a', '127.0.0.2'));
  api.change('pods', 'ADDED', pod('vllm-b', '127.0.0.3'));
  // Running but not yet ready: not an endpoint.
  api.change('pods', 'ADDED', pod('vllm-c', '127.0.0.4', { ready: false }));
  // Ready, but another app's: the selector leaves it out.
  api.change('pods', 'ADDED', pod('other', '127.0.0.4', { app: 'other' }));

  const directory = mkdtempSync(path.join(tmpdir(), 'gravity-k8s-'));
  const kubeconfig = path.join(directory, 'kubeconfig.json');
  const server = `http://127.0.0.1:${(api.server.address() as AddressInfo).port}`;
  writeFileSync(
    kubeconfig,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'loopback', cluster: { server, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'epp', user: { token: 'loopback-token' } }],
      contexts: [{ name: 'loopback', context: { cluster: 'loopback', user: 'epp', namespace } }],
      'current-context': 'loopback',
    }),
  );
  harness = await startHarness(() => {}, {
    engines: {},
    models: {},
    epp: {
      port: 0,
      models: [model],
      discovery: { kubernetes: { namespace, inferencePool: poolName, kubeconfig } },
    },
  });
  const services = extProcServices();
  const Client = grpc.makeGenericClientConstructor(services.extProc, 'Epp');
  client = new Client(
    harness.server.eppAddress as string,
    grpc.credentials.createInsecure(),
  ) as unknown as typeof client;
});

afterAll(async () => {
  client?.close();
  await harness?.close();
  await api?.close();
  await Promise.all((modelServers ?? []).map((server) => server.close()));
});

describe('Endpoint Picker: endpoints from an InferencePool watch', () => {
  it('picks among the ready pods the pool selects', async () => {
    expect([...(await pickable())].sort()).toEqual([at('127.0.0.2'), at('127.0.0.3')]);
  });

  it('makes a pod that turns ready pickable', async () => {
    api.change('pods', 'MODIFIED', pod('vllm-c', '127.0.0.4'));
    await pickableBecomes([at('127.0.0.2'), at('127.0.0.3'), at('127.0.0.4')]);
  });

  it('stops picking a pod that turns not ready, is being deleted, or is deleted', async () => {
    api.change('pods', 'MODIFIED', pod('vllm-b', '127.0.0.3', { ready: false }));
    await pickableBecomes([at('127.0.0.2'), at('127.0.0.4')]);
    api.change('pods', 'MODIFIED', pod('vllm-c', '127.0.0.4', { deleting: true }));
    await pickableBecomes([at('127.0.0.2')]);
    api.change('pods', 'DELETED', pod('vllm-c', '127.0.0.4', { deleting: true }));
    api.change('pods', 'MODIFIED', pod('vllm-b', '127.0.0.3'));
    await pickableBecomes([at('127.0.0.2'), at('127.0.0.3')]);
  });

  it('gives each pod one endpoint per target port, and follows the pool when its ports change', async () => {
    api.change('pools', 'MODIFIED', pool([port, secondPort]));
    await pickableBecomes([
      at('127.0.0.2'),
      at('127.0.0.2', secondPort),
      at('127.0.0.3'),
      at('127.0.0.3', secondPort),
    ]);
    api.change('pools', 'MODIFIED', pool([port]));
    await pickableBecomes([at('127.0.0.2'), at('127.0.0.3')]);
  });

  it('keeps the endpoints while the API server is unreachable, and catches up once it is back', async () => {
    api.down = true;
    // The watches were cut and their restarts refused: nothing changes meanwhile.
    await waitFor(() => api.refused >= 2);
    expect([...(await pickable())].sort()).toEqual([at('127.0.0.2'), at('127.0.0.3')]);
    // A change made during the outage reaches the EPP once a restarted watch resumes.
    api.change('pods', 'ADDED', pod('vllm-d', '127.0.0.4'));
    api.down = false;
    await pickableBecomes([at('127.0.0.2'), at('127.0.0.3'), at('127.0.0.4')], 15_000);
  });
});
