// The load client's worker thread (see load-client.ts for the plan and result types). It runs apart from the
// benchmark's main thread, so that its HTTP and SSE work never shares an event loop with a server measured
// in the same process, and never waits behind the benchmark's own bookkeeping. Plain JavaScript so the
// worker needs no TypeScript loader. Messages in: { type: 'run', plan } and { type: 'stop' }; out:
// { type: 'done', run } or { type: 'failed', message }.
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { parentPort } from 'node:worker_threads';

const host = '127.0.0.1';
const streamEnd = 'data: [DONE]\n\n';
/** Connection pools by port; replaced when a plan asks for fresh connections. */
let agents = new Map();
let stopRequested = false;

function agentFor(port) {
  let agent = agents.get(port);
  if (!agent) {
    agent = new http.Agent({ keepAlive: true, maxSockets: 4096, maxFreeSockets: 4096 });
    agents.set(port, agent);
  }
  return agent;
}

function dropConnections() {
  for (const agent of agents.values()) agent.destroy();
  agents = new Map();
}

/** What one event's JSON carries: text of the first choice, usage, or an error. */
function readEvent(data, outcome) {
  const chunk = JSON.parse(data);
  if (chunk.error !== undefined) throw new Error(`stream error event: ${data.slice(0, 300)}`);
  if (chunk.usage) {
    outcome.promptTokens = chunk.usage.prompt_tokens ?? null;
    outcome.completionTokens = chunk.usage.completion_tokens ?? null;
  }
  const choice = chunk.choices?.[0];
  const text = choice?.delta?.content ?? choice?.text;
  return typeof text === 'string' ? text : '';
}

/** Parses complete SSE events out of `pending`; returns the unparsed rest. */
function readEvents(pending, arrivedAt, outcome, timing) {
  let boundary = pending.indexOf('\n\n');
  while (boundary !== -1) {
    const event = pending.slice(0, boundary);
    pending = pending.slice(boundary + 2);
    boundary = pending.indexOf('\n\n');
    let data = null;
    for (const line of event.split('\n')) {
      if (!line.startsWith('data:')) continue;
      const value = line.slice(line.startsWith('data: ') ? 6 : 5);
      data = data === null ? value : `${data}\n${value}`;
    }
    if (data === null) continue;
    if (data === '[DONE]') {
      outcome.done = true;
      continue;
    }
    const text = readEvent(data, outcome);
    if (text === '') continue;
    if (outcome.contentChunks === 0) outcome.ttftMs = arrivedAt - timing.sentAt;
    else outcome.gapsMs?.push(arrivedAt - timing.lastContentAt);
    timing.lastContentAt = arrivedAt;
    outcome.contentChunks++;
    if (outcome.content !== undefined) outcome.content += text;
  }
  return pending;
}

/** Checks a whole JSON response and fills in its content and usage. */
function readJson(text, outcome) {
  const body = JSON.parse(text);
  const choice = body.choices?.[0];
  const content = choice?.message?.content ?? choice?.text;
  if (typeof content !== 'string') throw new Error(`the JSON response has no content: ${text.slice(0, 300)}`);
  outcome.contentChunks = 1;
  outcome.done = true;
  if (outcome.content !== undefined) outcome.content = content;
  outcome.promptTokens = body.usage?.prompt_tokens ?? null;
  outcome.completionTokens = body.usage?.completion_tokens ?? null;
}

/**
 * One request, never rejected: failures are outcomes with their status (0 without a response) and error.
 * `detail` 'timing' parses every event (TTFT, inter-token gaps, content, usage); 'light' only checks the
 * status and that a stream ends with [DONE] (or a JSON body has usage), which keeps the client cheap.
 */
function send(request, plan) {
  return new Promise((resolve) => {
    const timing = { sentAt: performance.now(), lastContentAt: 0 };
    const outcome = {
      tag: request.tag ?? '',
      sentAtMs: performance.timeOrigin + timing.sentAt,
      requestId: null,
      status: 0,
      ttftMs: null,
      e2eMs: 0,
      contentChunks: 0,
      promptTokens: null,
      completionTokens: null,
      done: false,
      error: null,
    };
    if (plan.detail === 'timing') outcome.gapsMs = [];
    if (plan.keepBody) outcome.content = '';
    let settled = false;
    const finish = (error) => {
      if (settled) return;
      settled = true;
      outcome.e2eMs = performance.now() - timing.sentAt;
      if (error) outcome.error = error.message ?? String(error);
      resolve(outcome);
    };
    const body = request.body;
    const outgoing = http.request(
      {
        host,
        port: request.port,
        path: request.path,
        method: 'POST',
        agent: agentFor(request.port),
        headers: {
          ...request.headers,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
        },
      },
      (response) => {
        outcome.status = response.statusCode ?? 0;
        outcome.requestId = response.headers['x-request-id'] ?? null;
        response.setEncoding('utf8');
        const streaming = (response.headers['content-type'] ?? '').startsWith('text/event-stream');
        const parse = outcome.status === 200 && streaming && plan.detail === 'timing';
        const whole = outcome.status !== 200 || !streaming;
        let text = '';
        let failure = null;
        response.on('data', (piece) => {
          if (failure) return;
          if (whole) text += piece;
          else if (!parse) text = (text + piece).slice(-streamEnd.length);
          else {
            try {
              text = readEvents(text + piece.replaceAll('\r\n', '\n'), performance.now(), outcome, timing);
            } catch (error) {
              failure = error;
            }
          }
        });
        response.on('error', finish);
        response.on('end', () => {
          if (failure) return finish(failure);
          if (outcome.status !== 200)
            return finish(new Error(`HTTP ${outcome.status}: ${text.slice(0, 300)}`));
          try {
            if (!streaming) readJson(text, outcome);
            else if (!parse) outcome.done = text === streamEnd;
          } catch (error) {
            return finish(error);
          }
          finish(outcome.done ? null : new Error('the stream ended without data: [DONE]'));
        });
      },
    );
    outgoing.on('error', finish);
    outgoing.end(body);
  });
}

/** Opens `count` connections with one request each before the clock starts (retried once). */
async function prime(plan, count) {
  const request = plan.requests[0];
  await Promise.all(
    Array.from({ length: count }, async () => {
      let outcome = await send(request, plan);
      if (outcome.error) outcome = await send(request, plan);
      if (outcome.error) throw new Error(`priming: ${outcome.error}`);
    }),
  );
}

async function run(plan) {
  stopRequested = false;
  if (plan.freshConnections) dropConnections();
  if (plan.prime) await prime(plan, plan.prime);
  const outcomes = [];
  let failed = 0;
  let next = 0;
  const maxErrors = plan.maxErrors ?? Number.POSITIVE_INFINITY;
  const keepGoing = () => !stopRequested && failed < maxErrors;
  const record = (outcome) => {
    outcomes.push(outcome);
    if (outcome.error) failed++;
  };
  const startedAt = performance.now();
  if (plan.arrivalsMs) {
    // Open loop: each request at its own time, whatever the others are doing.
    const pending = [];
    for (const atMs of plan.arrivalsMs) {
      const waitMs = startedAt + atMs - performance.now();
      if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
      if (!keepGoing()) break;
      pending.push(send(plan.requests[next++ % plan.requests.length], plan).then(record));
    }
    await Promise.all(pending);
  } else {
    // Closed loop: each of `concurrency` users sends its next request when its last one ends, until the
    // time or request budget is spent; requests already started finish.
    const deadline = startedAt + (plan.seconds ?? Number.POSITIVE_INFINITY) * 1000;
    const budget = plan.maxRequests ?? Number.POSITIVE_INFINITY;
    const user = async () => {
      while (keepGoing() && next < budget && performance.now() < deadline)
        record(await send(plan.requests[next++ % plan.requests.length], plan));
    };
    await Promise.all(Array.from({ length: plan.concurrency ?? 1 }, user));
  }
  return { wallMs: performance.now() - startedAt, outcomes };
}

parentPort.on('message', (message) => {
  if (message.type === 'stop') {
    stopRequested = true;
    return;
  }
  run(message.plan).then(
    (result) => parentPort.postMessage({ type: 'done', run: result }),
    (error) => parentPort.postMessage({ type: 'failed', message: String(error?.stack ?? error) }),
  );
});
