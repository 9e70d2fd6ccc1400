import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extProcServices, type ProcessingRequest } from '../src/epp/ext-proc-protocol.js';
import { destinationList, EnvoyStream, type ProcessCall, requestHeaders } from './support/envoy-ext-proc.js';
import { type Harness, startHarness } from './support/gravity-harness.js';
import { type ApiObject, FakeKubernetesApi } from './support/kubernetes-api-stand-in.js';
import { startLoopbackModelServer } from './support/loopback-model-server.js';

// The Endpoint Picker's endpoints from a Kubernetes watch of an InferencePool and its pods, served by a
// loopback stand-in for the API server (test/support/kubernetes-api-stand-in.ts). Model servers listen on
// 127.0.0.2/.3/.4, which stand for the pods' IPs.

const model = 'llama-k8s';
const namespace = 'inference';
const poolName = 'vllm-pool';
const buffered = 2;

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
    const list = destinationList(await envoy.next());
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

  api = new FakeKubernetesApi(namespace);
  await api.listen();
  api.change('pools', 'ADDED', pool([port]));
  api.change('pods', 'ADDED', pod('vllm-a', '127.0.0.2'));
  api.change('pods', 'ADDED', pod('vllm-b', '127.0.0.3'));
  // Running but not yet ready: not an endpoint.
  api.change('pods', 'ADDED', pod('vllm-c', '127.0.0.4', { ready: false }));
  // Ready, but another app's: the selector leaves it out.
  api.change('pods', 'ADDED', pod('other', '127.0.0.4', { app: 'other' }));

  const kubeconfig = path.join(mkdtempSync(path.join(tmpdir(), 'gravity-k8s-')), 'kubeconfig.json');
  api.writeKubeconfig(kubeconfig);
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
