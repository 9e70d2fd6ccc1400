import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, startHarness } from './support/gravity-harness.js';

let harness: Harness;
let agentInUse: http.Agent | undefined;
beforeAll(async () => {
  harness = await startHarness();
});
afterAll(async () => {
  await harness?.close();
});

/** A raw streamed request: the response's headers, its body, and whether the server closed the socket. */
function streamOnce(connection: 'close' | 'keep-alive') {
  const url = new URL(`${harness.url}/v1/chat/completions`);
  const agent = new http.Agent({ keepAlive: connection === 'keep-alive' });
  agentInUse = agent;
  return new Promise<{ headers: http.IncomingHttpHeaders; body: string; serverClosed: Promise<void> }>(
    (resolve, reject) => {
      const request = http.request(
        {
          host: url.hostname,
          port: url.port,
          path: url.pathname,
          method: 'POST',
          agent,
          headers: { 'content-type': 'application/json', connection },
        },
        (response) => {
          let body = '';
          response.setEncoding('utf8');
          response.on('data', (chunk: string) => {
            body += chunk;
          });
          const socket = response.socket;
          const serverClosed = new Promise<void>((closed) => {
            socket.once('close', () => closed());
            socket.once('end', () => closed());
          });
          response.on('end', () => {
            resolve({ headers: response.headers, body, serverClosed });
          });
        },
      );
      request.on('error', reject);
      request.end(
        JSON.stringify({
          model: 'gravity-tiny',
          messages: [{ role: 'user', content: 'a' }],
          max_tokens: 3,
          stream: true,
        }),
      );
    },
  );
}

describe('streamed responses over HTTP', () => {
  it('honour Connection: close: the server ends the socket after [DONE]', async () => {
    const { headers, body, serverClosed } = await streamOnce('close');
    expect(headers['content-type']).toMatch(/text\/event-stream/);
    expect(headers.connection).toBe('close');
    expect(body.trimEnd().endsWith('data: [DONE]')).toBe(true);
    await serverClosed;
  });

  it('keep the connection alive when the client asks for it', async () => {
    const { headers, body } = await streamOnce('keep-alive');
    expect(headers.connection).toBe('keep-alive');
    agentInUse?.destroy();
    expect(body).toContain('"finish_reason":"length"');
  });
});
