// A small, fast OpenAI-compatible upstream for benchmarks: POST /v1/chat/completions, streamed or not, in
// OpenAI's response shapes, with a fixed number of tokens per response. Everything but the response id and
// timestamp is precomputed per response shape, so the upstream costs little CPU next to what it is used to
// measure. Run as a process (it prints `fake-upstream: listening on <url>`):
//   npx tsx bench/support/fake-openai-upstream.ts --port 0 --tokens 16 --delay-ms 0

import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';

const host = '127.0.0.1';
// Plain words so responses look like text; each counts as one token.
const words = ['The', ' quick', ' brown', ' fox', ' jumps', ' over', ' the', ' lazy', ' dog', '.'];
const jsonHeaders = { 'content-type': 'application/json' };
const sseHeaders = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' };

/**
 * One response shape: what follows `{"id":"<id>","object":…,"created":<s>,` in each JSON document, so a
 * response costs a few string concatenations. A stream keeps one tail per SSE event; `tokens` are the
 * indexes of the events a delay paces.
 */
interface Shape {
  object: string;
  tails: string[];
  tokens: [first: number, end: number];
}

function buildShape(body: Record<string, unknown>, tokensPerResponse: number): Shape {
  const limit = body.max_completion_tokens ?? body.max_tokens;
  const maxTokens = typeof limit === 'number' && limit >= 1 ? Math.floor(limit) : tokensPerResponse;
  const completionTokens = Math.min(tokensPerResponse, maxTokens);
  const finish = `"finish_reason":"${maxTokens < tokensPerResponse ? 'length' : 'stop'}"`;
  // A rough prompt size (~4 characters per token), as a real upstream's tokenizer would give.
  const characters = JSON.stringify(body.messages ?? '').length;
  const promptTokens = Math.max(1, Math.ceil(characters / 4));
  const usage = JSON.stringify({
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    prompt_tokens_details: { cached_tokens: 0 },
  });
  const common = `"model":${JSON.stringify(String(body.model ?? ''))},"service_tier":"default","system_fingerprint":"fp_fake",`;
  const texts = Array.from({ length: completionTokens }, (_, index) => words[index % words.length] as string);
  if (body.stream !== true) {
    const message = `{"role":"assistant","content":${JSON.stringify(texts.join(''))},"refusal":null}`;
    return {
      object: 'chat.completion',
      tails: [
        `${common}"choices":[{"index":0,"message":${message},"logprobs":null,${finish}}],"usage":${usage}}`,
      ],
      tokens: [0, 0],
    };
  }
  // With include_usage every chunk carries `"usage":null`, and a last chunk with empty choices has the usage.
  const includeUsage = (body.stream_options as { include_usage?: unknown } | null)?.include_usage === true;
  const usageNull = includeUsage ? ',"usage":null' : '';
  const chunk = (delta: string, finishReason: string) =>
    `${common}"choices":[{"index":0,"delta":${delta},"logprobs":null,${finishReason}}]${usageNull}}`;
  const tails = [
    chunk('{"role":"assistant","content":"","refusal":null}', '"finish_reason":null'),
    ...texts.map((text) => chunk(`{"content":${JSON.stringify(text)}}`, '"finish_reason":null')),
    chunk('{}', finish),
    ...(includeUsage ? [`${common}"choices":[],"usage":${usage}}`] : []),
  ];
  return { object: 'chat.completion.chunk', tails, tokens: [1, 1 + completionTokens] };
}

async function startFakeUpstream(options: {
  port: number;
  tokensPerResponse: number;
  /** Pause between streamed tokens; 0 sends the whole stream in one write. */
  interTokenDelayMs: number;
}): Promise<string> {
  const { tokensPerResponse, interTokenDelayMs } = options;
  const shapes = new Map<string, Shape>();
  // Random per process so ids from two runs never collide; a counter makes them unique within one.
  const idBase = `chatcmpl-${randomBytes(6).toString('hex')}`;
  let responses = 0;

  const respond = (body: Record<string, unknown>, response: http.ServerResponse) => {
    const key = JSON.stringify([
      body.model,
      body.stream,
      body.stream_options,
      body.max_tokens,
      body.max_completion_tokens,
      body.messages,
    ]);
    let shape = shapes.get(key);
    if (!shape) {
      // Shapes are few in a benchmark; the bound only guards misuse.
      if (shapes.size >= 1024) shapes.clear();
      shape = buildShape(body, tokensPerResponse);
      shapes.set(key, shape);
    }
    const { tails, tokens } = shape;
    const head = `{"id":"${idBase}${(responses++).toString(36)}","object":"${shape.object}","created":${Math.floor(Date.now() / 1000)},`;
    if (shape.object === 'chat.completion') {
      response.writeHead(200, jsonHeaders).end(head + tails[0]);
      return;
    }
    const events = (from: number, to: number) => {
      let text = '';
      for (let index = from; index < to; index++) text += `data: ${head}${tails[index]}\n\n`;
      return text;
    };
    response.writeHead(200, sseHeaders);
    if (interTokenDelayMs === 0) {
      response.end(`${events(0, tails.length)}data: [DONE]\n\n`);
      return;
    }
    // Paced: the opening event at once, each token one delay after the previous (the first one delay after
    // the request), and the finish and usage events right after the last token, as OpenAI sends them.
    response.write(events(0, tokens[0]));
    let next = tokens[0];
    const timer = setInterval(() => {
      if (response.destroyed) return clearInterval(timer);
      response.write(events(next, next + 1));
      if (++next < tokens[1]) return;
      clearInterval(timer);
      response.end(`${events(next, tails.length)}data: [DONE]\n\n`);
    }, interTokenDelayMs);
    response.once('close', () => clearInterval(timer));
  };

  const server = http.createServer((request, response) => {
    // The model list a gateway's health probe reads (any model name is served).
    if (request.method === 'GET' && request.url === '/v1/models') {
      response.writeHead(200, jsonHeaders).end('{"object":"list","data":[]}');
      return;
    }
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      let body: unknown = null;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {}
      if (
        request.method !== 'POST' ||
        request.url !== '/v1/chat/completions' ||
        body === null ||
        typeof body !== 'object'
      ) {
        const message = `expected POST /v1/chat/completions with a JSON object, got ${request.method} ${request.url}`;
        response
          .writeHead(400, jsonHeaders)
          .end(JSON.stringify({ error: { message, type: 'invalid_request_error' } }));
        return;
      }
      respond(body as Record<string, unknown>, response);
    });
  });
  // Longer than any client's idle keep-alive, so a reused connection is never closed under a request.
  server.keepAliveTimeout = 120_000;
  server.headersTimeout = 125_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, host, resolve);
  });
  return `http://${host}:${(server.address() as AddressInfo).port}/v1`;
}

const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    tokens: { type: 'string', default: '16' },
    'delay-ms': { type: 'string', default: '0' },
  },
  strict: true,
});
const url = await startFakeUpstream({
  port: Number(values.port),
  tokensPerResponse: Number(values.tokens),
  interTokenDelayMs: Number(values['delay-ms']),
});
// The line benchmarks wait for, with the address to use.
process.stdout.write(`fake-upstream: listening on ${url}\n`);
process.once('SIGTERM', () => process.exit(0));
process.once('SIGINT', () => process.exit(0));
