import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface LoopbackModelServer {
  ip: string;
  port: number;
  close(): Promise<void>;
}

/**
 * An OpenAI-compatible model server on `ip:port` serving `model`: its model list, and a non-streamed chat
 * answer with usage. The Endpoint Picker's discovery tests put several on 127.0.0.x at one port, as pods
 * of one model server listen.
 */
export async function startLoopbackModelServer(
  model: string,
  ip: string,
  port: number,
): Promise<LoopbackModelServer> {
  const server: Server = createServer((request, response) => {
    response.setHeader('content-type', 'application/json');
    if (request.method === 'GET') {
      response.end(JSON.stringify({ object: 'list', data: [{ id: model, max_model_len: 8192 }] }));
      return;
    }
    request.resume();
    request.on('end', () =>
      response.end(
        JSON.stringify({
          id: 'x',
          object: 'chat.completion',
          choices: [{ index: 0, message: { role: 'assistant', content: 'hi' } }],
          usage: { prompt_tokens: 11, completion_tokens: 2, total_tokens: 13 },
        }),
      ),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, ip, resolve);
  });
  return {
    ip,
    port: (server.address() as AddressInfo).port,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
