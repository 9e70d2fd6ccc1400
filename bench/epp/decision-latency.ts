// The Endpoint Picker's decision latency beside the HTTP gateway's added latency, in one run against one
// `gravity serve` (a child process) in front of one fake upstream:
// - EPP: a gRPC client plays Envoy's ext_proc sequence per request (request headers, a buffered chat body,
//   then the response's headers and body, as Envoy sends them once the model server answered); the
//   decision is the time from sending the request headers to the answer that names the destination.
// - HTTP: streamed chat requests through Gravity and straight to the upstream; Gravity's added latency is
//   the difference of the time to first token at each quantile.
//   npm run bench:epp -- --help

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { quantileOfSorted } from '../../src/core/quantile.js';
import {
  extProcServices,
  type ProcessingRequest,
  type ProcessingResponse,
} from '../../src/epp/ext-proc-protocol.js';
import { freeLoopbackPort } from '../../test/support/free-port.js';
import { ChildProcessGroup, startFakeUpstream, startGravity } from '../support/child-processes.js';
import { chatBody, LoadClient, throwOnFailures } from '../support/load-client.js';
import {
  columnsTable,
  fixed,
  integer,
  integers,
  printPreamble,
  ratio,
  readOptions,
} from '../support/report-format.js';

const options = readOptions(
  'bench:epp',
  "The EPP's decision latency beside the HTTP gateway's added latency",
  {
    requests: integer(2000, 'measured requests per path and concurrency', { quick: 300 }),
    warmup: integer(200, 'unmeasured requests per path and concurrency first', { quick: 50 }),
    concurrency: integers([1, 64], 'requests in flight at once (closed loop)'),
  },
);

const bufferedBodyMode = 2;
const eppModel = 'epp-model';
const httpModel = 'http-model';
/** A typical chat request: a system prompt and a question, ~120 tokens. */
const prompt = {
  system:
    'You are a helpful assistant for a software company. Answer briefly and precisely, cite the relevant ' +
    'documentation section when you can, and say so when you do not know.',
  question:
    'How do I rotate the API keys of a tenant without downtime, and what happens to requests in flight?',
};

const children = new ChildProcessGroup();
const upstreamUrl = await startFakeUpstream(children, { name: 'fast', tokens: 16, delayMs: 0 });
const upstream = new URL(upstreamUrl);
const eppPort = await freeLoopbackPort();
const work = mkdtempSync(path.join(tmpdir(), 'gravity-bench-epp-'));
const configPath = path.join(work, 'gravity.yaml');
writeFileSync(
  configPath,
  `engines:
  up: { type: openai-upstream, baseUrl: '${upstreamUrl}' }
models:
  ${httpModel}: { engine: up }
epp:
  port: ${eppPort}
  endpoints: ['${upstream.host}']
  models: [${eppModel}]
`,
);
const gravity = await startGravity(children, {
  name: 'gravity',
  configPath,
  dataDir: path.join(work, 'data'),
});

printPreamble('Endpoint Picker decision latency', 'bench:epp', [
  `gravity:  ${gravity.argv.join(' ')}`,
  `upstream: bench/support/fake-openai-upstream.ts at ${upstreamUrl}, 16 tokens per answer, no delay`,
  `EPP:      ext_proc on 127.0.0.1:${eppPort}, one endpoint (the same upstream); buffered request body; one gRPC stream per request on one HTTP/2 connection, as Envoy holds them`,
  `settings: ${options.requests} measured requests (+${options.warmup} warm-up) per path and concurrency, closed loop`,
]);

// --- EPP -------------------------------------------------------------------------------------------

type ProcessCall = grpc.ClientDuplexStream<ProcessingRequest, ProcessingResponse>;
const services = extProcServices();
const Client = grpc.makeGenericClientConstructor(services.extProc, 'ExternalProcessor');
const client = new Client(
  `127.0.0.1:${eppPort}`,
  grpc.credentials.createInsecure(),
) as unknown as grpc.Client & {
  Process(): ProcessCall;
};

const requestBody = Buffer.from(
  chatBody({ model: eppModel, system: prompt.system, prompt: prompt.question, maxTokens: 16, stream: true }),
);
const header = (key: string, value: string) => ({ key, raw_value: Buffer.from(value) });
const requestHeaders: ProcessingRequest = {
  request_headers: {
    headers: {
      headers: [
        header(':method', 'POST'),
        header(':path', '/v1/chat/completions'),
        header('content-type', 'application/json'),
        header('content-length', String(requestBody.length)),
      ],
    },
    end_of_stream: false,
  },
  protocol_config: { request_body_mode: bufferedBodyMode, response_body_mode: bufferedBodyMode },
};
/** What a model server answers a streamed chat request with, as Envoy would pass it back. */
const responseBody = Buffer.from(
  [
    ...['The', ' quick', ' fox'].map((text) =>
      JSON.stringify({ choices: [{ index: 0, delta: { content: text } }] }),
    ),
    JSON.stringify({ choices: [], usage: { prompt_tokens: 40, completion_tokens: 3, total_tokens: 43 } }),
    '[DONE]',
  ]
    .map((data) => `data: ${data}\n\n`)
    .join(''),
);

/** One request's ext_proc exchange; the milliseconds from its headers to the answer naming the pick. */
function oneExchange(): Promise<number> {
  return new Promise((resolve, reject) => {
    const call = client.Process();
    let step = 0;
    let decisionMs = 0;
    const startedAt = performance.now();
    call.on('data', (answer: ProcessingResponse) => {
      step++;
      if (answer.immediate_response) {
        reject(new Error(`the EPP refused: ${answer.immediate_response.body?.toString('utf8')}`));
        call.cancel();
        return;
      }
      if (step === 1) {
        call.write({ request_body: { body: requestBody, end_of_stream: true } });
      } else if (step === 2) {
        decisionMs = performance.now() - startedAt;
        const picked = answer.request_body?.response?.header_mutation?.set_headers?.length ?? 0;
        if (picked === 0) reject(new Error('the body answer names no destination'));
        call.write({
          response_headers: {
            headers: { headers: [header(':status', '200'), header('content-type', 'text/event-stream')] },
            end_of_stream: false,
          },
        });
      } else if (step === 3) {
        call.write({ response_body: { body: responseBody, end_of_stream: true } });
      } else if (step === 4) {
        call.end();
      }
    });
    call.on('error', reject);
    call.on('end', () =>
      step >= 4 ? resolve(decisionMs) : reject(new Error(`stream ended at step ${step}`)),
    );
    call.write(requestHeaders);
  });
}

/** `total` exchanges, `concurrency` at a time; their decision times, sorted. */
async function runEpp(concurrency: number, total: number): Promise<number[]> {
  const samples: number[] = [];
  let started = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (started < total) {
        started++;
        samples.push(await oneExchange());
      }
    }),
  );
  return samples.sort((a, b) => a - b);
}

// --- HTTP ------------------------------------------------------------------------------------------

const load = new LoadClient();
async function runHttp(port: number, model: string, concurrency: number, total: number): Promise<number[]> {
  const run = await load.run({
    requests: [
      {
        port,
        path: '/v1/chat/completions',
        body: chatBody({
          model,
          system: prompt.system,
          prompt: prompt.question,
          maxTokens: 16,
          stream: true,
        }),
      },
    ],
    concurrency,
    maxRequests: total,
    detail: 'timing',
    freshConnections: true,
    prime: concurrency,
  });
  throwOnFailures(run.outcomes, `HTTP ${model}`);
  return run.outcomes.map((outcome) => outcome.ttftMs as number).sort((a, b) => a - b);
}

// --- run -------------------------------------------------------------------------------------------

interface Row {
  concurrency: number;
  eppP50: number;
  eppP99: number;
  addedP50: number;
  addedP99: number;
  directP50: number;
  gravityP50: number;
}
const rows: Row[] = [];
try {
  for (const concurrency of options.concurrency) {
    await runEpp(concurrency, options.warmup);
    await runHttp(gravity.port, httpModel, concurrency, options.warmup);
    await runHttp(Number(upstream.port), httpModel, concurrency, options.warmup);
    const epp = await runEpp(concurrency, options.requests);
    const viaGravity = await runHttp(gravity.port, httpModel, concurrency, options.requests);
    const direct = await runHttp(Number(upstream.port), httpModel, concurrency, options.requests);
    const at = (samples: number[], q: number) => quantileOfSorted(samples, q) as number;
    rows.push({
      concurrency,
      eppP50: at(epp, 0.5),
      eppP99: at(epp, 0.99),
      addedP50: at(viaGravity, 0.5) - at(direct, 0.5),
      addedP99: at(viaGravity, 0.99) - at(direct, 0.99),
      directP50: at(direct, 0.5),
      gravityP50: at(viaGravity, 0.5),
    });
    console.log(`measured: concurrency ${concurrency}`);
  }
} finally {
  client.close();
  await load.close();
  await children.stopAll(5000);
  children.dispose();
}

console.log(
  `\n${columnsTable(rows, [
    ['concurrency', (row) => String(row.concurrency)],
    ['EPP decision p50 (ms)', (row) => fixed(row.eppP50, 3)],
    ['EPP decision p99 (ms)', (row) => fixed(row.eppP99, 3)],
    ['HTTP added TTFT p50 (ms)', (row) => fixed(row.addedP50, 3)],
    ['HTTP added TTFT p99 (ms)', (row) => fixed(row.addedP99, 3)],
    ['EPP p50 / HTTP added p50', (row) => ratio(row.eppP50, row.addedP50)],
    [
      'TTFT p50 direct / via Gravity (ms)',
      (row) => `${fixed(row.directP50, 3)} / ${fixed(row.gravityP50, 3)}`,
    ],
  ])}`,
);
console.log(
  '\nAll figures measured on this machine, client and servers on loopback. The EPP decision includes the gRPC round trips of the headers and the body; the HTTP figure is time to first token through Gravity minus straight to the upstream, at the same quantile.',
);
