// The benchmark's load generator: chat completions over node:http with a keep-alive agent, either timed
// event by event (time to the first content chunk and the gaps between content chunks, at concurrency 1)
// or as a closed loop that checks only what is cheap (status and the stream's final [DONE]).

import http from 'node:http';
import { performance } from 'node:perf_hooks';

const host = '127.0.0.1';
const streamEnd = 'data: [DONE]\n\n';

export interface RequestTarget {
  port: number;
  path: string;
  headers: Record<string, string>;
}

export type ResponseMode = 'stream' | 'json';

export interface StreamTiming {
  /** From just before the request is written to the arrival of the first non-empty content delta. */
  firstContentMs: number;
  /** Between the arrivals of consecutive content chunks (0 when a proxy delivers two in one read). */
  gapsMs: number[];
  contentChunks: number;
  content: string;
  done: boolean;
}

function send(
  target: RequestTarget,
  agent: http.Agent,
  body: Buffer,
  onResponse: (response: http.IncomingMessage) => void,
  onError: (error: Error) => void,
): void {
  const request = http.request(
    {
      host,
      port: target.port,
      path: target.path,
      method: 'POST',
      agent,
      headers: { ...target.headers, 'content-type': 'application/json', 'content-length': body.length },
    },
    onResponse,
  );
  request.on('error', onError);
  request.end(body);
}

/** The data lines of one SSE event joined, or null for an event without data (a comment, a keep-alive). */
function eventData(event: string): string | null {
  let data: string | null = null;
  for (const line of event.split('\n')) {
    if (!line.startsWith('data:')) continue;
    const value = line.slice(line.startsWith('data: ') ? 6 : 5).replace(/\r$/, '');
    data = data === null ? value : `${data}\n${value}`;
  }
  return data;
}

function contentOf(data: string): string {
  const chunk = JSON.parse(data) as { choices?: Array<{ delta?: { content?: unknown } }>; error?: unknown };
  if (chunk.error !== undefined) throw new Error(`stream error event: ${data.slice(0, 300)}`);
  const content = chunk.choices?.[0]?.delta?.content;
  return typeof content === 'string' ? content : '';
}

/** One streamed request, parsed as it arrives; every chunk of one read shares that read's arrival time. */
export function timedStream(target: RequestTarget, agent: http.Agent, body: Buffer): Promise<StreamTiming> {
  return new Promise<StreamTiming>((resolve, reject) => {
    const sentAt = performance.now();
    send(
      target,
      agent,
      body,
      (response) => {
        response.setEncoding('utf8');
        const timing: StreamTiming = {
          firstContentMs: Number.NaN,
          gapsMs: [],
          contentChunks: 0,
          content: '',
          done: false,
        };
        let pending = '';
        let lastContentAt = 0;
        let failure: Error | null = null;
        response.on('data', (text: string) => {
          const arrivedAt = performance.now();
          if (response.statusCode !== 200 || failure) {
            pending += text;
            return;
          }
          pending += text.includes('\r') ? text.replaceAll('\r\n', '\n') : text;
          let boundary = pending.indexOf('\n\n');
          while (boundary !== -1) {
            const data = eventData(pending.slice(0, boundary));
            pending = pending.slice(boundary + 2);
            boundary = pending.indexOf('\n\n');
            if (data === null) continue;
            if (data === '[DONE]') {
              timing.done = true;
              continue;
            }
            let content: string;
            try {
              content = contentOf(data);
            } catch (error) {
              failure = error as Error;
              return;
            }
            if (content === '') continue;
            if (timing.contentChunks === 0) timing.firstContentMs = arrivedAt - sentAt;
            else timing.gapsMs.push(arrivedAt - lastContentAt);
            lastContentAt = arrivedAt;
            timing.contentChunks++;
            timing.content += content;
          }
        });
        response.on('error', reject);
        response.on('end', () => {
          if (response.statusCode !== 200)
            reject(new Error(`HTTP ${response.statusCode}: ${pending.slice(0, 300)}`));
          else if (failure) reject(failure);
          else resolve(timing);
        });
      },
      reject,
    );
  });
}

/** One request read whole, for the checks before any measurement. */
export function wholeResponse(
  target: RequestTarget,
  agent: http.Agent,
  body: Buffer,
): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    send(
      target,
      agent,
      body,
      (response) => {
        response.setEncoding('utf8');
        let text = '';
        response.on('data', (chunk: string) => {
          text += chunk;
        });
        response.on('error', reject);
        response.on('end', () => resolve({ status: response.statusCode ?? 0, text }));
      },
      reject,
    );
  });
}

/** The hot loop's request: status 200 and, for a stream, the final [DONE]; for JSON, some content. */
function quickRequest(target: RequestTarget, agent: http.Agent, body: Buffer, mode: ResponseMode) {
  return new Promise<void>((resolve, reject) => {
    send(
      target,
      agent,
      body,
      (response) => {
        response.setEncoding('utf8');
        const whole = mode === 'json' || response.statusCode !== 200;
        let text = '';
        response.on('data', (chunk: string) => {
          // A stream only needs its tail; keeping it short keeps the client cheap.
          text = whole ? text + chunk : (text + chunk).slice(-streamEnd.length);
        });
        response.on('error', reject);
        response.on('end', () => {
          if (response.statusCode !== 200)
            reject(new Error(`HTTP ${response.statusCode}: ${text.slice(0, 300)}`));
          else if (mode === 'stream' && !text.endsWith(streamEnd))
            reject(new Error('the stream ended without data: [DONE]'));
          else if (mode === 'json' && !text.includes('"content":"'))
            reject(new Error(`the JSON response has no content: ${text.slice(0, 300)}`));
          else resolve();
        });
      },
      reject,
    );
  });
}

export interface ClosedLoopResult {
  wallMs: number;
  completedRequests: number;
  failedRequests: number;
  latenciesMs: number[];
  lastError: Error | null;
}

/**
 * `concurrency` workers each send the next request as soon as the previous one ends, until `seconds` have
 * passed (requests started before then finish), `maxErrors` requests have failed, or `stop()` says so.
 */
export async function closedLoop(options: {
  target: RequestTarget;
  agent: http.Agent;
  body: Buffer;
  mode: ResponseMode;
  concurrency: number;
  seconds: number;
  maxErrors: number;
  stop: () => boolean;
}): Promise<ClosedLoopResult> {
  const latenciesMs: number[] = [];
  let failedRequests = 0;
  let lastError: Error | null = null;
  const startedAt = performance.now();
  const deadline = startedAt + options.seconds * 1000;
  const worker = async () => {
    while (performance.now() < deadline && failedRequests < options.maxErrors && !options.stop()) {
      const sentAt = performance.now();
      try {
        await quickRequest(options.target, options.agent, options.body, options.mode);
        latenciesMs.push(performance.now() - sentAt);
      } catch (error) {
        failedRequests++;
        lastError = error as Error;
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return {
    wallMs: performance.now() - startedAt,
    completedRequests: latenciesMs.length,
    failedRequests,
    latenciesMs,
    lastError,
  };
}
