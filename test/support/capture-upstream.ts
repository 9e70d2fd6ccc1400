import { readFileSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import path from 'node:path';
import { listenOnLoopback } from './replay-upstream.js';

/**
 * A loopback HTTP server that plays recorded upstream behaviour (test/fixtures/sse-captures/) for
 * Gravity's openai-upstream engine: a captured SSE body, an HTTP error, a stream that fails before its
 * first token, or one that stalls so a test can watch the client's disconnect reach the upstream.
 *
 * One server serves several behaviours, chosen by the `model` of the request body: give each Gravity
 * model its own `upstreamModel` and the upstream engine sends that name.
 */

const capturesDirectory = path.join(import.meta.dirname, '..', 'fixtures', 'sse-captures');

/** A capture file's bytes as the server sent them, and the `data` payload of each event in order. */
export interface Capture {
  raw: string;
  events: string[];
}

export function readCapture(fileName: string): Capture {
  const raw = readFileSync(path.join(capturesDirectory, fileName), 'utf8');
  // The fixtures use `\n\n` between events and one `data:` line per event, as vLLM and llama-server do.
  const events = raw
    .split('\n\n')
    .filter((block) => block.startsWith('data: '))
    .map((block) => block.slice('data: '.length));
  return { raw, events };
}

export type UpstreamBehaviour =
  /** The capture's bytes, written in `pieces` writes cut at fixed byte offsets (inside events and characters). */
  | { kind: 'capture'; raw: string; pieces?: number }
  /** An HTTP error with this body, as the upstream sends it. */
  | { kind: 'http-error'; status: number; body: string }
  /** 200 and these events, then the socket is destroyed without `[DONE]`. */
  | { kind: 'cut'; events: string[] }
  /** 200 and these events, then nothing: the request stays open until the client side closes it. */
  | { kind: 'stall'; events: string[] };

export interface ReceivedRequest {
  path: string;
  headers: IncomingHttpHeaders;
  body: Record<string, unknown>;
  /** The raw body text, for byte-level comparisons. */
  text: string;
  /** Resolves when the connection closes before the response ended (the client side went away). */
  closedEarly: Promise<void>;
}

export interface CaptureUpstream {
  /** The base URL for the upstream engine's `baseUrl`, ending in `/v1`. */
  url: string;
  received: ReceivedRequest[];
  close(): Promise<void>;
}

export async function startCaptureUpstream(
  behaviours: Record<string, UpstreamBehaviour>,
): Promise<CaptureUpstream> {
  const received: ReceivedRequest[] = [];
  const server: Server = createServer(async (request, response) => {
    let text = '';
    for await (const chunk of request) text += chunk;
    let closeEarly: () => void = () => {};
    const closedEarly = new Promise<void>((resolve) => {
      closeEarly = resolve;
    });
    response.once('close', () => {
      if (!response.writableFinished) closeEarly();
    });
    const body = JSON.parse(text || '{}') as Record<string, unknown>;
    received.push({ path: request.url ?? '', headers: request.headers, body, text, closedEarly });
    const behaviour = behaviours[String(body.model)];
    if (!behaviour) {
      response.writeHead(404, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ error: { message: `no behaviour for ${String(body.model)}` } }));
      return;
    }
    if (behaviour.kind === 'http-error') {
      response.writeHead(behaviour.status, { 'content-type': 'application/json' });
      response.end(behaviour.body);
      return;
    }
    response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
    });
    if (behaviour.kind === 'capture') {
      for (const piece of cutIntoPieces(Buffer.from(behaviour.raw, 'utf8'), behaviour.pieces ?? 1)) {
        if (response.destroyed) return;
        response.write(piece);
        // A turn of the event loop between writes, so the pieces reach Gravity as separate reads.
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      response.end();
      return;
    }
    for (const event of behaviour.events) response.write(`data: ${event}\n\n`);
    if (behaviour.kind === 'cut') {
      // Let the events leave before the reset, so Gravity sees them and then the broken stream.
      await new Promise((resolve) => setTimeout(resolve, 20));
      response.socket?.destroy();
    }
    // 'stall': leave the response open; the test's client disconnect must close it.
  });
  return { ...(await listenOnLoopback(server)), received };
}

/**
 * Cuts bytes into about `count` pieces at offsets that do not line up with event boundaries, plus one
 * cut inside the first multi-byte UTF-8 character, so the relay's parser meets events split across reads
 * and a character split across two of them.
 */
function cutIntoPieces(bytes: Buffer, count: number): Buffer[] {
  if (count <= 1) return [bytes];
  const stride = Math.max(7, Math.floor(bytes.length / count) + 3);
  const cuts = new Set<number>();
  for (let offset = stride; offset < bytes.length; offset += stride) cuts.add(offset);
  const firstMultiByte = bytes.findIndex((byte) => byte >= 0x80);
  if (firstMultiByte >= 0) cuts.add(firstMultiByte + 1);
  const pieces: Buffer[] = [];
  let from = 0;
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    pieces.push(bytes.subarray(from, cut));
    from = cut;
  }
  pieces.push(bytes.subarray(from));
  return pieces;
}

/** Reads an SSE response body and returns its events' `data` payloads in order, as the client received them. */
export async function readSseEvents(response: Response): Promise<string[]> {
  const text = await response.text();
  return text
    .split('\n\n')
    .filter((block) => block.length > 0)
    .map((block) => {
      if (!block.startsWith('data: ')) throw new Error(`not a data event: ${block.slice(0, 80)}`);
      return block.slice('data: '.length);
    });
}
