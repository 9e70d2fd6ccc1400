import { createServer } from 'node:net';

/**
 * A loopback port that was free a moment ago and is closed now: for a server a test starts on it, or
 * for a URL nothing answers (connecting is refused).
 */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}
