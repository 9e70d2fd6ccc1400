// The embeddings benchmark's HTTP client, on a worker thread so it never takes the event loop of the
// Gravity server measured in the benchmark's own process. It sends the bodies it is given one after the
// other (one request in flight, as the in-process path runs one input at a time) with fetch's
// keep-alive pool, and checks each answer has a vector per input.
import { parentPort } from 'node:worker_threads';

parentPort.on('message', async ({ url, bodies, inputsPerBody }) => {
  try {
    const startedAt = performance.now();
    let vectors = 0;
    for (const body of bodies) {
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      });
      const text = await response.text();
      if (response.status !== 200) throw new Error(`HTTP ${response.status}: ${text.slice(0, 300)}`);
      const answer = JSON.parse(text);
      if (!Array.isArray(answer.data) || answer.data.length !== inputsPerBody)
        throw new Error(`expected ${inputsPerBody} vectors: ${text.slice(0, 300)}`);
      vectors += answer.data.length;
    }
    parentPort.postMessage({ type: 'done', wallMs: performance.now() - startedAt, vectors });
  } catch (error) {
    parentPort.postMessage({ type: 'error', message: error.message });
  }
});
