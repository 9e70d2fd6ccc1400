// Preloaded into a peer gateway (`node --import <this file> …`) whose start script offers no listen address
// and so binds every interface (Portkey's start-server.js calls @hono/node-server's serve() without a
// hostname). Every TCP listen in the process is forced onto 127.0.0.1, and the address actually bound is
// printed, so the benchmark never exposes a server beyond loopback and learns the port when given port 0.
// Plain JavaScript so the peer runs without a TypeScript loader, as it would in production.
import net from 'node:net';

const host = '127.0.0.1';
const originalListen = net.Server.prototype.listen;

net.Server.prototype.listen = function listenOnLoopback(...args) {
  const callback = typeof args.at(-1) === 'function' ? args.pop() : undefined;
  const first = args[0];
  let options;
  if (typeof first === 'object' && first !== null) {
    // A handle or a Unix socket path is not a TCP address: nothing to force, and nothing a peer should use.
    if ('handle' in first || '_handle' in first || 'fd' in first || 'path' in first)
      throw new Error('loopback-listen: only TCP listens are allowed');
    options = { ...first, host };
  } else if (typeof first === 'string' && !/^\d+$/.test(first)) {
    throw new Error(`loopback-listen: refusing to listen on the path ${first}`);
  } else {
    options = { port: first === undefined ? 0 : Number(first), host };
  }
  this.once('listening', () => {
    const address = this.address();
    if (address && typeof address === 'object')
      process.stdout.write(`loopback-listen: listening on http://${address.address}:${address.port}\n`);
  });
  return callback ? originalListen.call(this, options, callback) : originalListen.call(this, options);
};
