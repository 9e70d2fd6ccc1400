import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A loopback HTTP server that replays a fixed SSE stream with delays between events, for the upstream
 * behaviours a live Gravity upstream never shows: servers that send no usage chunk (TGI before 2.x,
 * older llama.cpp servers) and slow token streams that reveal buffering. It records what it received.
 */
export interface ReplayUpstream {
  url: string;
  received: Array<{ path: string; headers: IncomingMessage['headers']; body: unknown }>;
  close(): Promise<void>;
}

export async function startReplayUpstream(options: {
  events: string[];
  delayMs: number;
  status?: number;
}): Promise<ReplayUpstream> {
  const received: ReplayUpstream['received'] = [];
  const server: Server = createServer(async (request, response) => {
    let raw = '';
    for await (const chunk of request) raw += chunk;
    received.push({ path: request.url ?? '', headers: request.headers, body: JSON.parse(raw || 'null') });
    if (options.status && options.status !== 200) {
      response.writeHead(options.status, { 'content-type': 'application/json' });
      response.end(
        JSON.stringify({ error: { message: 'replayed failure', type: 'server_error', code: null } }),
      );
      return;
    }
    response.writeHead(200, { 'content-type': 'text/event-stream' });
    for (const event of options.events) {
      if (response.destroyed) return;
      response.write(`data: ${event}\n\n`);
      await new Promise((resolve) => setTimeout(resolve, options.delayMs));
    }
    response.end();
  });
  return { ...(await listenOnLoopback(server)), received };
}

/** A chat stream as a server without usage reporting sends it: role, three tokens, finish, [DONE]. */
export function chatStreamWithoutUsage(tokens: string[]): string[] {
  const base = { id: 'chatcmpl-replay', object: 'chat.completion.chunk', created: 1, model: 'replayed' };
  return [
    JSON.stringify({ ...base, choices: [{ index: 0, delta: { role: 'assistant' }, finish_reason: null }] }),
    ...tokens.map((token) =>
      JSON.stringify({ ...base, choices: [{ index: 0, delta: { content: token }, finish_reason: null }] }),
    ),
    JSON.stringify({ ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }),
    '[DONE]',
  ];
}

/** Starts a test upstream on a free loopback port: its `/v1` base URL, and a close that drops keep-alives. */
export async function listenOnLoopback(server: Server): Promise<{ url: string; close(): Promise<void> }> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
