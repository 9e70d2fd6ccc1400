import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SqliteKeyStore } from '../src/admission/sqlite-key-store.js';
import { createKey } from '../src/cli/keys-command.js';
import { eppEngineId } from '../src/epp/epp-config.js';
import { extProcServices, type ProcessingResponse } from '../src/epp/ext-proc-protocol.js';
import { configFile } from './support/config-file.js';
import { EnvoyStream, type ProcessCall, requestHeaders } from './support/envoy-ext-proc.js';
import { freeLoopbackPort } from './support/free-port.js';
import { type Harness, startHarness } from './support/gravity-harness.js';
import { startGravityProcess } from './support/gravity-process.js';

// A gRPC client plays Envoy's ext_proc message sequences against a live EPP (Gravity in this process),
// and forwards each request itself to the endpoint the EPP picked: small OpenAI-compatible servers on
// loopback, so the response path carries what a model server really sends.

const model = 'llama-epp';
const fullDuplex = 4;
const buffered = 2;

interface ModelServer {
  address: string;
  requests: number;
  close(): Promise<void>;
}

/** An OpenAI-compatible model server: its model list, and chat answers streamed with a usage chunk. */
async function startModelServer(): Promise<ModelServer> {
  const state = { requests: 0 };
  const server: Server = createServer((request, response) => {
    if (request.method === 'GET' && request.url === '/v1/models') {
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify({ object: 'list', data: [{ id: model, max_model_len: 8192 }] }));
      return;
    }
    let body = '';
    request.on('data', (chunk) => {
      body += chunk;
    });
    request.on('end', () => {
      state.requests++;
      if (request.url === '/v1/embeddings') {
        response.setHeader('content-type', 'application/json');
        response.end(
          JSON.stringify({
            object: 'list',
            data: [{ object: 'embedding', index: 0, embedding: [0.25, -0.5, 0.125] }],
            model,
            usage: { prompt_tokens: 5, total_tokens: 5 },
          }),
        );
        return;
      }
      const stream = (JSON.parse(body) as { stream?: boolean }).stream === true;
      const usage = { prompt_tokens: 11, completion_tokens: 2, total_tokens: 13 };
      if (!stream) {
        response.setHeader('content-type', 'application/json');
        response.end(
          JSON.stringify({
            id: 'x',
            object: 'chat.completion',
            choices: [{ index: 0, message: { role: 'assistant', content: 'hi there' } }],
            usage,
          }),
        );
        return;
      }
      response.setHeader('content-type', 'text/event-stream');
      for (const text of ['hi', ' there'])
        response.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: text } }] })}\n\n`);
      response.write(`data: ${JSON.stringify({ choices: [], usage })}\n\n`);
      response.end('data: [DONE]\n\n');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    address: `127.0.0.1:${port}`,
    get requests() {
      return state.requests;
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

const chatBody = (content: string, stream = true) =>
  JSON.stringify({ model, messages: [{ role: 'user', content }], stream, max_tokens: 8 });

/** The destination an answer carries, from the header mutation and from the dynamic metadata. */
function destinationOf(answer: ProcessingResponse): {
  header: string | undefined;
  metadata: string | undefined;
} {
  const common = (answer.request_headers ?? answer.request_body)?.response;
  const header = common?.header_mutation?.set_headers?.find(
    (option) => option.header.key === 'x-gateway-destination-endpoint',
  )?.header;
  const metadata =
    answer.dynamic_metadata?.fields?.['envoy.lb']?.structValue?.fields?.['x-gateway-destination-endpoint']
      ?.stringValue;
  return {
    header: header && (header.raw_value?.toString('utf8') || header.value),
    metadata,
  };
}

/** The picked list, after checking what the protocol demands of every pick. */
function pickedList(answer: ProcessingResponse): string[] {
  const { header, metadata } = destinationOf(answer);
  expect(header).toBeDefined();
  expect(metadata).toBe(header);
  const common = (answer.request_headers ?? answer.request_body)?.response;
  expect(common?.clear_route_cache).toBe(true);
  return (header as string).split(',');
}

function immediate(answer: ProcessingResponse): { status: number; body: unknown } {
  expect(answer.immediate_response).toBeDefined();
  const response = answer.immediate_response as NonNullable<ProcessingResponse['immediate_response']>;
  return {
    status: response.status.code,
    body: JSON.parse((response.body ?? Buffer.alloc(0)).toString('utf8')),
  };
}

let endpoints: ModelServer[];
let harness: Harness;
let client: grpc.Client & {
  Process(): ProcessCall;
  Check(
    request: { service: string },
    callback: (error: Error | null, answer?: { status?: number }) => void,
  ): void;
};
const open: EnvoyStream[] = [];

async function startEpp(
  endpointAddresses: string[],
  configure: Parameters<typeof startHarness>[0] = () => {},
): Promise<{ harness: Harness; client: typeof client }> {
  const started = await startHarness(configure, {
    engines: {},
    models: {},
    epp: { port: 0, endpoints: endpointAddresses, models: [model] },
  });
  const services = extProcServices();
  const Client = grpc.makeGenericClientConstructor({ ...services.extProc, ...services.health }, 'Epp');
  const grpcClient = new Client(started.server.eppAddress as string, grpc.credentials.createInsecure());
  return { harness: started, client: grpcClient as unknown as typeof client };
}

function stream(grpcClient = client): EnvoyStream {
  const opened = new EnvoyStream(grpcClient.Process());
  open.push(opened);
  return opened;
}

/** Plays the response path: forwards the request to `address` and passes its answer back as Envoy does. */
async function playResponse(
  envoy: EnvoyStream,
  address: string,
  body: string,
  options: { fullDuplex: boolean; served?: string; path?: string },
): Promise<Buffer[]> {
  const response = await fetch(`http://${address}${options.path ?? '/v1/chat/completions'}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
  });
  const bytes = Buffer.from(await response.arrayBuffer());
  const metadata = {
    filter_metadata: {
      'envoy.lb': {
        fields: { 'x-gateway-destination-endpoint-served': { stringValue: options.served ?? address } },
      },
    },
  };
  envoy.send({
    response_headers: {
      headers: {
        headers: [
          { key: ':status', raw_value: Buffer.from(String(response.status)) },
          { key: 'content-type', raw_value: Buffer.from(response.headers.get('content-type') ?? '') },
        ],
      },
    },
    metadata_context: metadata,
  });
  expect((await envoy.next()).response_headers).toBeDefined();
  const passedBack: Buffer[] = [];
  // Two chunks, as a stream arrives: the EPP must answer each.
  const middle = Math.floor(bytes.length / 2);
  for (const [index, chunk] of [bytes.subarray(0, middle), bytes.subarray(middle)].entries()) {
    envoy.send({ response_body: { body: chunk, end_of_stream: index === 1 }, metadata_context: metadata });
    const answer = await envoy.next();
    expect(answer.response_body).toBeDefined();
    const streamed = answer.response_body?.response?.body_mutation?.streamed_response;
    if (options.fullDuplex) {
      expect(streamed?.end_of_stream ?? false).toBe(index === 1);
      passedBack.push(streamed?.body ?? Buffer.alloc(0));
    } else expect(streamed).toBeUndefined();
  }
  return passedBack;
}

function ledgerRows(path: string) {
  const ledger = new Database(path, { readonly: true });
  try {
    return ledger
      .prepare(
        'SELECT status, error_code, tenant, model, engine, prompt_tokens, completion_tokens, usage_source FROM usage_records',
      )
      .all() as Array<Record<string, unknown>>;
  } finally {
    ledger.close();
  }
}

async function waitFor(condition: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

beforeAll(async () => {
  endpoints = [await startModelServer(), await startModelServer()];
  ({ harness, client } = await startEpp(endpoints.map((endpoint) => endpoint.address)));
});

afterEach(() => {
  for (const opened of open.splice(0)) opened.call.cancel();
});

afterAll(async () => {
  client?.close();
  await harness?.close();
  await Promise.all(endpoints.map((endpoint) => endpoint.close()));
});

describe('Endpoint Picker: gRPC health', () => {
  it('serves liveness, readiness, the ext_proc service and the server as a whole', async () => {
    const check = (service: string) =>
      new Promise<number | undefined>((resolve, reject) =>
        client.Check({ service }, (error, answer) => (error ? reject(error) : resolve(answer?.status))),
      );
    for (const service of ['', 'liveness', 'readiness', 'envoy.service.ext_proc.v3.ExternalProcessor'])
      expect(await check(service)).toBe(1);
    expect(await check('no.such.Service')).toBe(3);
  });
});

describe('Endpoint Picker: request path', () => {
  it('picks at once for headers with end_of_stream, header equal to metadata, the pick then a fallback', async () => {
    const envoy = stream();
    envoy.send(requestHeaders('/v1/models', { endOfStream: true }));
    const picked = pickedList(await envoy.next());
    const addresses = endpoints.map((endpoint) => endpoint.address);
    expect(picked).toHaveLength(2);
    expect(new Set(picked)).toEqual(new Set(addresses));
  });

  it('answers buffered headers with CONTINUE, then the body with the destination, and meters the response', async () => {
    const before = ledgerRows(harness.ledgerPath).length;
    const envoy = stream();
    envoy.send(requestHeaders('/v1/chat/completions', { bodyMode: buffered }));
    const headersAnswer = await envoy.next();
    expect(headersAnswer.request_headers).toBeDefined();
    expect(destinationOf(headersAnswer).header).toBeUndefined();
    const body = chatBody('hello buffered');
    envoy.send({ request_body: { body: Buffer.from(body), end_of_stream: true } });
    const answer = await envoy.next();
    expect(answer.request_body).toBeDefined();
    const [pick] = pickedList(answer);
    await playResponse(envoy, pick as string, body, { fullDuplex: false });
    envoy.close();
    await waitFor(() => ledgerRows(harness.ledgerPath).length === before + 1);
    expect(ledgerRows(harness.ledgerPath).at(-1)).toMatchObject({
      status: 200,
      model,
      engine: eppEngineId(pick as string),
      prompt_tokens: 11,
      completion_tokens: 2,
      usage_source: 'upstream',
    });
  });

  it('meters an embeddings request through the pick, with the usage its JSON answer reports', async () => {
    const before = ledgerRows(harness.ledgerPath).length;
    const envoy = stream();
    envoy.send(requestHeaders('/v1/embeddings', { bodyMode: buffered }));
    await envoy.next();
    const body = JSON.stringify({ model, input: 'embed me' });
    envoy.send({ request_body: { body: Buffer.from(body), end_of_stream: true } });
    const [pick] = pickedList(await envoy.next());
    await playResponse(envoy, pick as string, body, { fullDuplex: false, path: '/v1/embeddings' });
    envoy.close();
    await waitFor(() => ledgerRows(harness.ledgerPath).length === before + 1);
    expect(ledgerRows(harness.ledgerPath).at(-1)).toMatchObject({
      status: 200,
      model,
      engine: eppEngineId(pick as string),
      prompt_tokens: 5,
      completion_tokens: 0,
      usage_source: 'upstream',
    });
    // Validated as the HTTP API validates it: an embeddings body without input is a 400 at once.
    const refused = stream();
    refused.send(requestHeaders('/v1/embeddings', { bodyMode: buffered }));
    await refused.next();
    refused.send({ request_body: { body: Buffer.from(JSON.stringify({ model })), end_of_stream: true } });
    expect(immediate(await refused.next()).status).toBe(400);
  });

  it('FULL_DUPLEX_STREAMED: holds the header answer until the last chunk, then sends the body back streamed', async () => {
    const envoy = stream();
    envoy.send(requestHeaders('/v1/chat/completions', { bodyMode: fullDuplex }));
    const body = Buffer.from(chatBody('hello full duplex, in three chunks'));
    const chunks = [body.subarray(0, 10), body.subarray(10, 40), body.subarray(40)];
    envoy.send({ request_body: { body: chunks[0], end_of_stream: false } });
    envoy.send({ request_body: { body: chunks[1], end_of_stream: false } });
    expect(await envoy.silentFor(150)).toBe(true);
    envoy.send({ request_body: { body: chunks[2], end_of_stream: true } });
    const headersAnswer = await envoy.next();
    expect(headersAnswer.request_headers).toBeDefined();
    const [pick] = pickedList(headersAnswer);
    const echoed: Buffer[] = [];
    for (;;) {
      const answer = await envoy.next();
      const streamed = answer.request_body?.response?.body_mutation?.streamed_response;
      expect(streamed).toBeDefined();
      echoed.push(streamed?.body ?? Buffer.alloc(0));
      if (streamed?.end_of_stream) break;
    }
    expect(Buffer.concat(echoed).toString()).toBe(body.toString());
    const passedBack = await playResponse(envoy, pick as string, body.toString(), { fullDuplex: true });
    expect(Buffer.concat(passedBack).toString()).toContain('data: [DONE]');
  });

  it('FULL_DUPLEX_STREAMED with trailers: the trailers complete the body, answered in order', async () => {
    const envoy = stream();
    envoy.send(requestHeaders('/v1/chat/completions', { bodyMode: fullDuplex }));
    const body = Buffer.from(chatBody('hello, trailers follow'));
    envoy.send({ request_body: { body: body.subarray(0, 20), end_of_stream: false } });
    envoy.send({ request_body: { body: body.subarray(20), end_of_stream: false } });
    expect(await envoy.silentFor(100)).toBe(true);
    envoy.send({ request_trailers: { trailers: { headers: [] } } });
    pickedList(await envoy.next());
    const echoed: Buffer[] = [];
    for (const _chunk of [0, 1]) {
      const streamed = (await envoy.next()).request_body?.response?.body_mutation?.streamed_response;
      expect(streamed?.end_of_stream ?? false).toBe(false);
      echoed.push(streamed?.body ?? Buffer.alloc(0));
    }
    expect(Buffer.concat(echoed).toString()).toBe(body.toString());
    expect((await envoy.next()).request_trailers).toBeDefined();
  });

  it('sends a request to the less loaded endpoint first and names the other as its fallback', async () => {
    // The first request holds its endpoint (no response yet): the next one goes to the other.
    const first = stream();
    first.send(requestHeaders('/v1/chat/completions', { bodyMode: buffered }));
    await first.next();
    first.send({ request_body: { body: Buffer.from(chatBody('first')), end_of_stream: true } });
    const [busy] = pickedList(await first.next());
    const second = stream();
    second.send(requestHeaders('/v1/chat/completions', { bodyMode: buffered }));
    await second.next();
    second.send({ request_body: { body: Buffer.from(chatBody('second')), end_of_stream: true } });
    const list = pickedList(await second.next());
    const idle = endpoints.map((endpoint) => endpoint.address).find((address) => address !== busy);
    expect(list).toEqual([idle, busy]);
  });

  it('picks only from the subset hint, even the busier endpoint', async () => {
    const first = stream();
    first.send(requestHeaders('/v1/models', { endOfStream: true }));
    const [busy] = pickedList(await first.next());
    const envoy = stream();
    envoy.send(requestHeaders('/v1/models', { endOfStream: true, subset: [busy as string] }));
    expect(pickedList(await envoy.next())).toEqual([busy]);
  });

  it('answers 503 for an empty subset hint and for one naming no endpoint of the pool', async () => {
    for (const subset of [[], ['10.255.0.1:8000']]) {
      const envoy = stream();
      envoy.send(requestHeaders('/v1/models', { endOfStream: true, subset }));
      const { status, body } = immediate(await envoy.next());
      expect(status).toBe(503);
      expect(body).toMatchObject({ error: { type: 'service_unavailable' } });
    }
  });

  it('records the endpoint Envoy says served the request when it fell back from the pick', async () => {
    const before = ledgerRows(harness.ledgerPath).length;
    const envoy = stream();
    envoy.send(requestHeaders('/v1/chat/completions', { bodyMode: buffered }));
    await envoy.next();
    const body = chatBody('served elsewhere', false);
    envoy.send({ request_body: { body: Buffer.from(body), end_of_stream: true } });
    const [pick, fallback] = pickedList(await envoy.next());
    // The pick failed in Envoy; the fallback answered (a JSON body this time, with its usage).
    await playResponse(envoy, fallback as string, body, { fullDuplex: false, served: fallback as string });
    envoy.close();
    await waitFor(() => ledgerRows(harness.ledgerPath).length === before + 1);
    expect(pick).not.toBe(fallback);
    expect(ledgerRows(harness.ledgerPath).at(-1)).toMatchObject({
      status: 200,
      engine: eppEngineId(fallback as string),
      prompt_tokens: 11,
      completion_tokens: 2,
      usage_source: 'upstream',
    });
  });

  it('answers a request for a model the pool does not serve with a 404 OpenAI error', async () => {
    const envoy = stream();
    envoy.send(requestHeaders('/v1/chat/completions', { bodyMode: buffered }));
    await envoy.next();
    envoy.send({
      request_body: {
        body: Buffer.from(JSON.stringify({ model: 'nope', messages: [{ role: 'user', content: 'x' }] })),
        end_of_stream: true,
      },
    });
    const { status, body } = immediate(await envoy.next());
    expect(status).toBe(404);
    expect(body).toMatchObject({ error: { code: 'model_not_found' } });
  });
});

describe('Endpoint Picker: refusals', () => {
  it('answers 503 when no endpoint is ready (health probes failed)', async () => {
    const deadPort = await freeLoopbackPort();
    const { harness: dead, client: deadClient } = await startEpp([`127.0.0.1:${deadPort}`], (config) => {
      config.routing.health.intervalMs = 50;
      config.routing.health.timeoutMs = 200;
    });
    try {
      let status = 0;
      const deadline = Date.now() + 5000;
      while (status !== 503 && Date.now() < deadline) {
        const envoy = stream(deadClient);
        envoy.send(requestHeaders('/v1/models', { endOfStream: true }));
        const answer = await envoy.next();
        if (answer.immediate_response) status = immediate(answer).status;
        envoy.call.cancel();
        if (status !== 503) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(status).toBe(503);
    } finally {
      deadClient.close();
      await dead.close();
    }
  });

  it('asks for an API key once keys exist (401, no record) and records the key tenant', async () => {
    // Keys are looked up afresh on every request, so the key created below takes effect at once.
    const { harness: keyed, client: keyedClient } = await startEpp(
      [endpoints[0]?.address as string],
      (config) => {
        config.auth.keyCacheMs = 0;
      },
    );
    const store = new SqliteKeyStore(keyed.keysPath);
    const { key } = createKey(store, { tenant: 'acme' });
    store.close();
    try {
      const refused = stream(keyedClient);
      refused.send(requestHeaders('/v1/chat/completions', { bodyMode: buffered }));
      await refused.next();
      refused.send({ request_body: { body: Buffer.from(chatBody('no key')), end_of_stream: true } });
      const { status, body } = immediate(await refused.next());
      expect(status).toBe(401);
      expect(body).toMatchObject({ error: { message: expect.stringContaining('API key') } });
      const admitted = stream(keyedClient);
      admitted.send(
        requestHeaders('/v1/chat/completions', { bodyMode: buffered, authorization: `Bearer ${key}` }),
      );
      await admitted.next();
      const chat = chatBody('with a key');
      admitted.send({ request_body: { body: Buffer.from(chat), end_of_stream: true } });
      const [pick] = pickedList(await admitted.next());
      await playResponse(admitted, pick as string, chat, { fullDuplex: false });
      admitted.close();
      await waitFor(() => ledgerRows(keyed.ledgerPath).length === 1);
      expect(ledgerRows(keyed.ledgerPath)).toMatchObject([{ status: 200, tenant: 'acme' }]);
    } finally {
      keyedClient.close();
      await keyed.close();
    }
  });

  it('sheds with 429 when the endpoint is busy past the queue bound', async () => {
    const { harness: small, client: smallClient } = await startEpp(
      [endpoints[0]?.address as string],
      (config) => {
        config.scheduling.slotsPerReplica = 1;
        config.tiers.default.maxQueueWaitMs = 100;
      },
    );
    try {
      const holder = stream(smallClient);
      holder.send(requestHeaders('/v1/chat/completions', { bodyMode: buffered }));
      await holder.next();
      holder.send({
        request_body: { body: Buffer.from(chatBody('holds the only slot')), end_of_stream: true },
      });
      pickedList(await holder.next());
      const shed = stream(smallClient);
      shed.send(requestHeaders('/v1/chat/completions', { bodyMode: buffered }));
      await shed.next();
      shed.send({ request_body: { body: Buffer.from(chatBody('finds no room')), end_of_stream: true } });
      const { status, body } = immediate(await shed.next());
      expect(status).toBe(429);
      expect(body).toMatchObject({ error: { type: 'rate_limit_error', message: expect.any(String) } });
      // Recorded as answered: one row, a 429, while the request holding the slot is still running.
      await waitFor(() => ledgerRows(small.ledgerPath).length === 1);
      expect(ledgerRows(small.ledgerPath)).toMatchObject([{ status: 429, error_code: 'overloaded' }]);
    } finally {
      smallClient.close();
      await small.close();
    }
  });
});

describe('Endpoint Picker: prefix affinity', () => {
  it('sends a prompt that continues an earlier one to the endpoint that holds its prefix, busier or not', async () => {
    const { harness: affine, client: affineClient } = await startEpp(
      endpoints.map((endpoint) => endpoint.address),
      (config) => {
        config.routing.policy = 'prefix-load';
      },
    );
    const conversation = `You are a careful assistant. ${'Here is a long shared document. '.repeat(80)}`;
    const request = async (content: string, subset?: string[]) => {
      const envoy = stream(affineClient);
      envoy.send(requestHeaders('/v1/chat/completions', { bodyMode: buffered, ...(subset && { subset }) }));
      await envoy.next();
      const body = chatBody(content);
      envoy.send({ request_body: { body: Buffer.from(body), end_of_stream: true } });
      return { envoy, body, list: pickedList(await envoy.next()) };
    };
    try {
      const first = await request(`${conversation} First question?`);
      const holder = first.list[0] as string;
      await playResponse(first.envoy, holder, first.body, { fullDuplex: false });
      // Another request keeps that endpoint busy: load alone would now send the next one elsewhere.
      await request('An unrelated short question.', [holder]);
      const next = await request(`${conversation} First question? And a follow-up.`);
      expect(next.list[0]).toBe(holder);
    } finally {
      for (const opened of open.splice(0)) opened.call.cancel();
      affineClient.close();
      await affine.close();
    }
  });
});

describe('gravity serve --ext-proc-port', () => {
  it('serves the EPP beside the HTTP API, its endpoints from the config file', async () => {
    const address = endpoints[0]?.address as string;
    const file = configFile(`epp:\n  endpoints: ['${address}']\n  models: [${model}]\n`);
    const gravity = await startGravityProcess(['--config', file, '--ext-proc-port', '0']);
    const services = extProcServices();
    const Client = grpc.makeGenericClientConstructor({ ...services.extProc, ...services.health }, 'Epp');
    let processClient: typeof client | undefined;
    try {
      await waitFor(() => /gravity: ext_proc listening on \S+/.test(gravity.stdout()));
      const eppAddress = /gravity: ext_proc listening on (\S+)/.exec(gravity.stdout())?.[1] as string;
      processClient = new Client(eppAddress, grpc.credentials.createInsecure()) as unknown as typeof client;
      const readiness = await new Promise<number | undefined>((resolve, reject) =>
        processClient?.Check({ service: 'readiness' }, (error, answer) =>
          error ? reject(error) : resolve(answer?.status),
        ),
      );
      expect(readiness).toBe(1);
      const envoy = stream(processClient);
      envoy.send(requestHeaders('/v1/models', { endOfStream: true }));
      expect(pickedList(await envoy.next())).toEqual([address]);
      // The HTTP API beside it serves the same model through the endpoint.
      const models = (await (await fetch(`${gravity.url}/v1/models`)).json()) as {
        data: Array<{ id: string }>;
      };
      expect(models.data.map((entry) => entry.id)).toEqual([model]);
    } finally {
      for (const opened of open.splice(0)) opened.call.cancel();
      processClient?.close();
      gravity.child.kill('SIGTERM');
      await gravity.exited;
    }
  }, 60_000);
});

describe("Endpoint Picker: Envoy's own message definitions", () => {
  // Every other test encodes with Gravity's wire protos, the EPP's own: a wrong field number there would
  // pass both sides. This client speaks the ext_proc protos of @grpc/grpc-js-xds (Envoy's published
  // messages, older than the fields Gravity adds), so what it reads back was encoded at Envoy's numbers.
  it('is understood by a client using the protos Envoy publishes', async () => {
    const packageJson = createRequire(import.meta.url).resolve('@grpc/grpc-js-xds/package.json');
    const deps = path.join(path.dirname(packageJson), 'deps');
    const definition = loadSync('envoy/service/ext_proc/v3/external_processor.proto', {
      keepCase: true,
      longs: Number,
      enums: Number,
      defaults: false,
      includeDirs: ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((dir) =>
        path.join(deps, dir),
      ),
    });
    const service = definition['envoy.service.ext_proc.v3.ExternalProcessor'] as grpc.ServiceDefinition;
    const EnvoyClient = grpc.makeGenericClientConstructor(service, 'EnvoyExtProc');
    const envoyClient = new EnvoyClient(
      harness.server.eppAddress as string,
      grpc.credentials.createInsecure(),
    );
    try {
      const envoy = new EnvoyStream((envoyClient as unknown as { Process(): ProcessCall }).Process());
      open.push(envoy);
      // Headers in `value` (the field this snapshot has), a buffered body: the default without protocol_config.
      envoy.send({
        request_headers: {
          headers: {
            headers: [
              { key: ':method', value: 'POST' },
              { key: ':path', value: '/v1/chat/completions' },
            ],
          },
          end_of_stream: false,
        },
      } as never);
      expect((await envoy.next()).request_headers).toBeDefined();
      envoy.send({ request_body: { body: Buffer.from(chatBody('envoy protos')), end_of_stream: true } });
      const answer = await envoy.next();
      const common = answer.request_body?.response;
      expect(common?.clear_route_cache).toBe(true);
      expect(common?.header_mutation?.set_headers?.[0]?.header.key).toBe('x-gateway-destination-endpoint');
      const metadata =
        answer.dynamic_metadata?.fields?.['envoy.lb']?.structValue?.fields?.['x-gateway-destination-endpoint']
          ?.stringValue;
      expect(endpoints.map((endpoint) => endpoint.address)).toContain(metadata?.split(',')[0]);

      // An immediate response, read with Envoy's ImmediateResponse and HttpStatus.
      const refused = new EnvoyStream((envoyClient as unknown as { Process(): ProcessCall }).Process());
      open.push(refused);
      refused.send({
        request_headers: { headers: { headers: [{ key: ':path', value: '/v1/chat/completions' }] } },
      } as never);
      await refused.next();
      refused.send({ request_body: { body: Buffer.from('{"model": 7}'), end_of_stream: true } });
      const immediateAnswer = await refused.next();
      expect(immediateAnswer.immediate_response?.status.code).toBe(400);
      expect(JSON.parse(String(immediateAnswer.immediate_response?.body))).toMatchObject({
        error: { type: 'invalid_request_error' },
      });
    } finally {
      envoyClient.close();
    }
  });
});
