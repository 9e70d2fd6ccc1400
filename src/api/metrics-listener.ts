import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { errors } from '../core/errors.js';
import type { PrometheusMetrics } from '../metering/prometheus-metrics.js';
import { securityHeaderRecord } from './edge-bounds.js';

export interface MetricsListener {
  /** e.g. `http://127.0.0.1:9464` */
  url: string;
  close(): Promise<void>;
}

/**
 * `GET /metrics` on its own port (`metrics.port`), so the API's port never shows tenant names and a
 * scraper needs no key: who may reach this port is the network's decision (loopback by default). A
 * plain Node server: one route, no hooks, nothing of the API's pipeline.
 */
export async function startMetricsListener(
  metrics: PrometheusMetrics,
  options: { host: string; port: number },
): Promise<MetricsListener> {
  const server: Server = createServer((request, response) => {
    const path = request.url?.split('?', 1)[0];
    if (request.method !== 'GET' || path !== '/metrics') {
      const error = errors.notFound(request.method ?? 'GET', request.url ?? '/');
      response.writeHead(error.status, {
        ...securityHeaderRecord,
        'content-type': 'application/json; charset=utf-8',
      });
      response.end(JSON.stringify(error.toBody()));
      return;
    }
    metrics.render().then(
      (text) => {
        response.writeHead(200, { ...securityHeaderRecord, 'content-type': metrics.contentType() });
        response.end(text);
      },
      () => {
        const error = errors.internal();
        response.writeHead(error.status, {
          ...securityHeaderRecord,
          'content-type': 'application/json; charset=utf-8',
        });
        response.end(JSON.stringify(error.toBody()));
      },
    );
  });
  // A scrape is one short request: bound the slow clients as the API does, with Node's own deadlines.
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  server.maxConnections = 64;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
