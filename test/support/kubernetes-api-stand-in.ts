import { writeFileSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

// No cluster runs here: this loopback HTTP server speaks the Kubernetes API server's list and watch
// protocol for exactly the two resources the Endpoint Picker watches, one namespace's InferencePools and
// Pods (lists carry a resourceVersion; a watch replays the changes after the one it names, then streams
// JSON lines of {type, object}). `writeKubeconfig` points the client library at it.

export type Resource = 'pools' | 'pods';
export interface ApiObject {
  metadata: { name: string; namespace?: string; resourceVersion?: string; labels?: Record<string, string> };
  [key: string]: unknown;
}
interface WatchEvent {
  resourceVersion: number;
  resource: Resource;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: ApiObject;
}

/** An API server for one namespace's InferencePools and Pods: list, and watch from a resourceVersion. */
export class FakeKubernetesApi {
  readonly objects: Record<Resource, Map<string, ApiObject>> = { pools: new Map(), pods: new Map() };
  private readonly poolsPath: string;
  private readonly podsPath: string;
  private readonly history: WatchEvent[] = [];
  private readonly watchers = new Set<{
    resource: Resource;
    query: URLSearchParams;
    response: ServerResponse;
  }>();
  private resourceVersion = 1;

  constructor(private readonly namespace: string) {
    this.poolsPath = `/apis/inference.networking.k8s.io/v1/namespaces/${namespace}/inferencepools`;
    this.podsPath = `/api/v1/namespaces/${namespace}/pods`;
  }

  /** While true, open watches are cut and every request is answered 503. */
  private unavailable = false;
  refused = 0;
  readonly server: Server = createServer((request, response) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    const resource: Resource | undefined =
      url.pathname === this.poolsPath ? 'pools' : url.pathname === this.podsPath ? 'pods' : undefined;
    if (this.unavailable || resource === undefined || request.method !== 'GET') {
      if (this.unavailable) this.refused++;
      response.writeHead(resource === undefined ? 404 : 503, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ kind: 'Status', status: 'Failure', code: 503 }));
      return;
    }
    const query = url.searchParams;
    response.setHeader('content-type', 'application/json');
    if (query.get('watch') === 'true' || query.get('watch') === '1') {
      response.writeHead(200);
      // A watch answers its headers at once; the changes follow as they happen.
      response.flushHeaders();
      const since = Number(query.get('resourceVersion') || 0);
      for (const event of this.history)
        if (event.resourceVersion > since && event.resource === resource && matches(query, event.object))
          response.write(`${JSON.stringify({ type: event.type, object: event.object })}\n`);
      const watcher = { resource, query, response };
      this.watchers.add(watcher);
      response.on('close', () => this.watchers.delete(watcher));
      return;
    }
    const items = [...this.objects[resource].values()].filter((object) => matches(query, object));
    response.end(
      JSON.stringify({
        apiVersion: resource === 'pods' ? 'v1' : 'inference.networking.k8s.io/v1',
        kind: resource === 'pods' ? 'PodList' : 'InferencePoolList',
        metadata: { resourceVersion: String(this.resourceVersion) },
        items,
      }),
    );
  });

  /** Stores (or deletes) an object and streams the change to the watches it matches. */
  change(resource: Resource, type: WatchEvent['type'], object: ApiObject): void {
    this.resourceVersion++;
    const stored = {
      ...object,
      metadata: {
        ...object.metadata,
        namespace: this.namespace,
        resourceVersion: String(this.resourceVersion),
      },
    };
    if (type === 'DELETED') this.objects[resource].delete(object.metadata.name);
    else this.objects[resource].set(object.metadata.name, stored);
    this.history.push({ resourceVersion: this.resourceVersion, resource, type, object: stored });
    for (const watcher of this.watchers)
      if (watcher.resource === resource && matches(watcher.query, stored))
        watcher.response.write(`${JSON.stringify({ type, object: stored })}\n`);
  }

  set down(down: boolean) {
    this.unavailable = down;
    if (down) for (const watcher of this.watchers) watcher.response.destroy();
  }

  listen(): Promise<void> {
    return new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
  }

  /** A kubeconfig file naming this server, with the namespace as its context's default. */
  writeKubeconfig(file: string): void {
    const server = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    writeFileSync(
      file,
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [{ name: 'loopback', cluster: { server, 'insecure-skip-tls-verify': true } }],
        users: [{ name: 'epp', user: { token: 'loopback-token' } }],
        contexts: [
          { name: 'loopback', context: { cluster: 'loopback', user: 'epp', namespace: this.namespace } },
        ],
        'current-context': 'loopback',
      }),
    );
  }

  close(): Promise<void> {
    for (const watcher of this.watchers) watcher.response.destroy();
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** Equality label and field selectors, as the client sends them (`a=b,c=d`). */
function matches(query: URLSearchParams, object: ApiObject): boolean {
  const terms = (selector: string | null) =>
    (selector ?? '')
      .split(',')
      .filter(Boolean)
      .map((term) => term.split('=') as [string, string]);
  const labels = object.metadata.labels ?? {};
  if (!terms(query.get('labelSelector')).every(([key, value]) => labels[key] === value)) return false;
  return terms(query.get('fieldSelector')).every(
    ([key, value]) => key !== 'metadata.name' || object.metadata.name === value,
  );
}
