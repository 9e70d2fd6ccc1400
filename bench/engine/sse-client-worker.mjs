// The HTTP path's load generator, on its own thread: a real client runs outside the server process, so
// its SSE parsing must not share the server's event loop (which would charge client work to Gravity).
// Plain JavaScript so the worker needs no TypeScript loader. Receives
// { baseUrl, model, prompts, tokensPerStream } and answers with one result per stream, or { error }.
import { parentPort } from 'node:worker_threads';

async function streamOnce(baseUrl, model, prompt, tokensPerStream) {
  const sentAt = performance.now();
  const response = await fetch(`${baseUrl}/v1/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model,
      prompt,
      max_tokens: tokensPerStream,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    }),
  });
  if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
  const decoder = new TextDecoder();
  let buffered = '';
  let firstTextMs = Number.NaN;
  let usage;
  let done = false;
  for await (const bytes of response.body) {
    buffered += decoder.decode(bytes, { stream: true });
    let boundary = buffered.indexOf('\n\n');
    while (boundary !== -1) {
      const event = buffered.slice(0, boundary);
      buffered = buffered.slice(boundary + 2);
      boundary = buffered.indexOf('\n\n');
      if (!event.startsWith('data: ')) continue;
      const data = event.slice(6);
      if (data === '[DONE]') {
        done = true;
        continue;
      }
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(`stream error: ${data}`);
      if (chunk.usage) usage = chunk.usage;
      if (Number.isNaN(firstTextMs) && chunk.choices?.[0]?.text) firstTextMs = performance.now() - sentAt;
    }
  }
  if (!done || !usage) throw new Error('HTTP stream ended without a usage chunk and [DONE]');
  return {
    completionTokens: usage.completion_tokens,
    cachedPromptTokens: usage.prompt_tokens_details?.cached_tokens ?? 0,
    firstTextMs,
  };
}

parentPort.on('message', async ({ baseUrl, model, prompts, tokensPerStream }) => {
  try {
    const results = await Promise.all(
      prompts.map((prompt) => streamOnce(baseUrl, model, prompt, tokensPerStream)),
    );
    parentPort.postMessage({ results });
  } catch (error) {
    parentPort.postMessage({ error: String(error?.stack ?? error) });
  }
});
