// A small, fast OpenAI-compatible upstream for benchmarks: POST /v1/chat/completions and /v1/completions,
// streamed or not, in OpenAI's response shapes, with a fixed number of tokens per response. Everything but
// the response id and timestamp is precomputed per response shape, so the upstream costs little CPU next to
// what it is used to measure. Run as a process:
//   npx tsx bench/support/fake-openai-upstream.ts --port 0 --tokens 16 --delay-ms 0

import { randomBytes } from 'node:crypto';
import { realpathSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

export interface FakeUpstreamOptions {
  /** 0 or absent: any free port. */
  port?: number;
  /** Completion tokens of a response that `max_tokens` does not cut short. */
  tokensPerResponse: number;
  /** Pause between streamed tokens; 0 sends the whole stream in one write. */
  interTokenDelayMs: number;
}

export interface FakeUpstream {
  /** e.g. `http://127.0.0.1:41234/v1` */
  url: string;
  close(): Promise<void>;
}

type Endpoint = 'chat' | 'completions';

/**
 * One response shape: everything after `{"id":"<id>","object":…,"created":<s>,` of each JSON document, so
 * a response costs a few string concatenations. Streams keep one tail per SSE event.
 */
interface ShapeTemplate {
  idPrefix: string;
  object: string;
  /** SSE event tails, in order; the id/created head goes in front of each. Empty for JSON. */
  eventTails: string[];
  /** `eventTails[contentStart, contentEnd)` are the token events, the ones a delay paces. */
  contentStart: number;
  contentEnd: number;
  /** JSON body tail; empty for streams. */
  bodyTail: string;
  /** `data: [DONE]` and anything else after the JSON events. */
  trailer: string;
}

const host = '127.0.0.1';
const systemFingerprint = 'fp_fake';
// Plain words so responses look like text; each counts as one token.
const words = ['The', ' quick', ' brown', ' fox', ' jumps', ' over', ' the', ' lazy', ' dog', '.'];
/** Shapes are few (endpoint × stream × usage × length × model × prompt size); the bound only guards misuse. */
const maxCachedShapes = 1024;

const jsonHeaders = { 'content-type': 'application/json' };
const sseHeaders = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  connection: 'keep-alive',
};

function tokenText(index: number): string {
  return words[index % words.length] as string;
}

function usageJson(endpoint: Endpoint, promptTokens: number, completionTokens: number): string {
  // The legacy completions API reports only the three counts.
  if (endpoint === 'completions')
    return JSON.stringify({
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
    });
  return JSON.stringify({
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: 0,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  });
}

function buildShape(options: {
  endpoint: Endpoint;
  stream: boolean;
  includeUsage: boolean;
  model: string;
  promptTokens: number;
  completionTokens: number;
  finishReason: 'stop' | 'length';
}): ShapeTemplate {
  const { endpoint, stream, includeUsage, promptTokens, completionTokens, finishReason } = options;
  const isChat = endpoint === 'chat';
  const model = JSON.stringify(options.model);
  const usage = usageJson(endpoint, promptTokens, completionTokens);
  // The chat API echoes the service tier; the legacy completions API does not.
  const tier = isChat ? ',"service_tier":"default"' : '';
  const idPrefix = isChat ? 'chatcmpl-' : 'cmpl-';
  if (!stream) {
    let text = '';
    for (let index = 0; index < completionTokens; index++) text += tokenText(index);
    const choice = isChat
      ? `{"index":0,"message":{"role":"assistant","content":${JSON.stringify(text)},"refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"${finishReason}"}`
      : `{"text":${JSON.stringify(text)},"index":0,"logprobs":null,"finish_reason":"${finishReason}"}`;
    return {
      idPrefix,
      object: isChat ? 'chat.completion' : 'text_completion',
      eventTails: [],
      contentStart: 0,
      contentEnd: 0,
      bodyTail: `"model":${model},"choices":[${choice}],"usage":${usage}${tier},"system_fingerprint":"${systemFingerprint}"}`,
      trailer: '',
    };
  }
  // With include_usage every chunk carries `"usage":null`, and a last chunk with empty choices has the usage.
  const usageNull = includeUsage ? ',"usage":null' : '';
  const common = `"model":${model}${tier},"system_fingerprint":"${systemFingerprint}",`;
  const eventTails: string[] = [];
  if (isChat)
    eventTails.push(
      `${common}"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]${usageNull}}`,
    );
  const contentStart = eventTails.length;
  for (let index = 0; index < completionTokens; index++) {
    const text = JSON.stringify(tokenText(index));
    eventTails.push(
      isChat
        ? `${common}"choices":[{"index":0,"delta":{"content":${text}},"logprobs":null,"finish_reason":null}]${usageNull}}`
        : `${common}"choices":[{"text":${text},"index":0,"logprobs":null,"finish_reason":null}]${usageNull}}`,
    );
  }
  const contentEnd = eventTails.length;
  eventTails.push(
    isChat
      ? `${common}"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"${finishReason}"}]${usageNull}}`
      : `${common}"choices":[{"text":"","index":0,"logprobs":null,"finish_reason":"${finishReason}"}]${usageNull}}`,
  );
  if (includeUsage) eventTails.push(`${common}"choices":[],"usage":${usage}}`);
  return {
    idPrefix,
    object: isChat ? 'chat.completion.chunk' : 'text_completion',
    eventTails,
    contentStart,
    contentEnd,
    bodyTail: '',
    trailer: 'data: [DONE]\n\n',
  };
}

/** A rough token count of the prompt (~4 characters per token), as a real upstream's tokenizer would give. */
function promptTokensOf(body: Record<string, unknown>, endpoint: Endpoint): number {
  let characters = 0;
  if (endpoint === 'chat') {
    const messages = Array.isArray(body.messages) ? body.messages : [];
    for (const message of messages) {
      const content = (message as { content?: unknown }).content;
      if (typeof content === 'string') characters += content.length;
      else if (Array.isArray(content))
        for (const part of content) characters += String((part as { text?: unknown }).text ?? '').length;
    }
  } else {
    const prompt = Array.isArray(body.prompt) ? body.prompt.join('') : body.prompt;
    characters = typeof prompt === 'string' ? prompt.length : 0;
  }
  return Math.max(1, Math.ceil(characters / 4));
}

function sendError(response: http.ServerResponse, status: number, message: string): void {
  const body = JSON.stringify({
    error: { message, type: 'invalid_request_error', param: null, code: null },
  });
  response.writeHead(status, jsonHeaders).end(body);
}

export async function startFakeUpstream(options: FakeUpstreamOptions): Promise<FakeUpstream> {
  const { tokensPerResponse, interTokenDelayMs } = options;
  if (!Number.isInteger(tokensPerResponse) || tokensPerResponse < 1)
    throw new Error(`tokensPerResponse: expected a positive integer, got ${tokensPerResponse}`);
  if (!(interTokenDelayMs >= 0))
    throw new Error(`interTokenDelayMs: expected >= 0, got ${interTokenDelayMs}`);
  const shapes = new Map<string, ShapeTemplate>();
  // Random per process so ids from two runs never collide; a counter makes them unique within one.
  const idBase = randomBytes(6).toString('hex');
  let responseCount = 0;
  const timers = new Set<NodeJS.Timeout>();

  const shapeFor = (endpoint: Endpoint, body: Record<string, unknown>): ShapeTemplate => {
    const stream = body.stream === true;
    const streamOptions = body.stream_options as { include_usage?: unknown } | null | undefined;
    const includeUsage = stream && streamOptions?.include_usage === true;
    const model = typeof body.model === 'string' ? body.model : '';
    const limit = body.max_completion_tokens ?? body.max_tokens;
    const maxTokens = typeof limit === 'number' && limit >= 1 ? Math.floor(limit) : tokensPerResponse;
    const completionTokens = Math.min(tokensPerResponse, maxTokens);
    const finishReason = maxTokens < tokensPerResponse ? 'length' : 'stop';
    const promptTokens = promptTokensOf(body, endpoint);
    const key = `${endpoint}|${stream}|${includeUsage}|${completionTokens}|${promptTokens}|${model}`;
    let shape = shapes.get(key);
    if (!shape) {
      if (shapes.size >= maxCachedShapes) shapes.clear();
      shape = buildShape({
        endpoint,
        stream,
        includeUsage,
        model,
        promptTokens,
        completionTokens,
        finishReason,
      });
      shapes.set(key, shape);
    }
    return shape;
  };

  const respond = (endpoint: Endpoint, body: Record<string, unknown>, response: http.ServerResponse) => {
    const shape = shapeFor(endpoint, body);
    const head = `{"id":"${shape.idPrefix}${idBase}${(responseCount++).toString(36)}","object":"${shape.object}","created":${Math.floor(Date.now() / 1000)},`;
    if (shape.eventTails.length === 0) {
      response.writeHead(200, jsonHeaders).end(head + shape.bodyTail);
      return;
    }
    response.writeHead(200, sseHeaders);
    if (interTokenDelayMs === 0) {
      let text = '';
      for (const tail of shape.eventTails) text += `data: ${head}${tail}\n\n`;
      response.end(text + shape.trailer);
      return;
    }
    // Paced: the opening event at once, each token one delay after the previous (the first one delay
    // after the request), and the finish and usage events right after the last token, as OpenAI sends them.
    const event = (index: number) => `data: ${head}${shape.eventTails[index]}\n\n`;
    let opening = '';
    for (let index = 0; index < shape.contentStart; index++) opening += event(index);
    if (opening) response.write(opening);
    let next = shape.contentStart;
    let timer: NodeJS.Timeout | undefined;
    const sendNext = () => {
      if (timer) timers.delete(timer);
      timer = undefined;
      if (response.destroyed) return;
      if (next < shape.contentEnd) response.write(event(next++));
      if (next < shape.contentEnd) {
        timer = setTimeout(sendNext, interTokenDelayMs);
        timers.add(timer);
        return;
      }
      let closing = '';
      for (let index = shape.contentEnd; index < shape.eventTails.length; index++) closing += event(index);
      response.end(closing + shape.trailer);
    };
    response.once('close', () => {
      if (!timer) return;
      clearTimeout(timer);
      timers.delete(timer);
    });
    timer = setTimeout(sendNext, interTokenDelayMs);
    timers.add(timer);
  };

  const server = http.createServer((request, response) => {
    const url = request.url ?? '';
    const endpoint: Endpoint | null =
      url === '/v1/chat/completions' ? 'chat' : url === '/v1/completions' ? 'completions' : null;
    if (!endpoint) {
      request.resume();
      sendError(response, 404, `Unknown request URL: ${request.method} ${url}`);
      return;
    }
    if (request.method !== 'POST') {
      request.resume();
      sendError(response, 405, `Method ${request.method} not allowed on ${url}`);
      return;
    }
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        sendError(response, 400, 'The request body is not valid JSON.');
        return;
      }
      if (body === null || typeof body !== 'object' || Array.isArray(body)) {
        sendError(response, 400, 'The request body must be a JSON object.');
        return;
      }
      respond(endpoint, body as Record<string, unknown>, response);
    });
  });
  // Longer than any client's idle keep-alive, so a reused connection is never closed under a request.
  server.keepAliveTimeout = 120_000;
  server.headersTimeout = 125_000;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host}:${port}/v1`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}

const usage = `Usage: npx tsx bench/support/fake-openai-upstream.ts [options]

  --port <n>       port on 127.0.0.1, 0 for any free port (default 0)
  --tokens <n>     completion tokens per response (default 16)
  --delay-ms <ms>  pause between streamed tokens (default 0)
  --help           print this`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '0' },
      tokens: { type: 'string', default: '16' },
      'delay-ms': { type: 'string', default: '0' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(usage);
    return;
  }
  const port = Number(values.port);
  const tokensPerResponse = Number(values.tokens);
  const interTokenDelayMs = Number(values['delay-ms']);
  if (!Number.isInteger(port) || port < 0 || port > 65_535)
    throw new Error(`--port: bad value '${values.port}'`);
  const upstream = await startFakeUpstream({ port, tokensPerResponse, interTokenDelayMs });
  // Machine-readable line for scripts that start the upstream on port 0.
  process.stdout.write(`fake-upstream: listening on ${upstream.url}\n`);
  const stop = () => {
    upstream.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

function isMainModule(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMainModule()) {
  main().catch((error: Error) => {
    console.error(`fake-upstream: ${error.message}\n\n${usage}`);
    process.exit(2);
  });
}
