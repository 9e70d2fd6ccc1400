import {
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  ListWatch,
  type V1Pod,
  Watch,
} from '@kubernetes/client-node';
import type { EngineAdapter } from '../engines/engine-adapter.js';
import type { Gateway } from '../gateway/gateway.js';
import { endpointAddress } from './dns-endpoint-discovery.js';
import type { EndpointDirectory } from './endpoint-directory.js';
import { EndpointMembership, gatewayMembership } from './endpoint-membership.js';

/** The InferencePool fields the EPP reads (`inference.networking.k8s.io/v1`). */
interface InferencePool extends KubernetesObject {
  spec?: {
    selector?: { matchLabels?: Record<string, string> };
    targetPorts?: Array<{ number?: number }>;
  };
}

const poolGroup = 'inference.networking.k8s.io';
const poolVersion = 'v1';
const poolPlural = 'inferencepools';
/** The first reconnect waits this long, each further one twice as long, up to `maxRetryMs`. */
const firstRetryMs = 500;
const maxRetryMs = 30_000;

/** `matchLabels` as a label selector (`a=b,c=d`); empty when the pool selects nothing by label. */
export function labelSelectorOf(matchLabels: Record<string, string> | undefined): string {
  return Object.entries(matchLabels ?? {})
    .map(([key, value]) => `${key}=${value}`)
    .sort()
    .join(',');
}

/** A pod that may take requests: Running, with an IP, Ready, and not being deleted. */
export function isServingPod(pod: V1Pod): boolean {
  if (pod.metadata?.deletionTimestamp) return false;
  if (pod.status?.phase !== 'Running' || !pod.status.podIP) return false;
  return (pod.status.conditions ?? []).some(
    (condition) => condition.type === 'Ready' && condition.status === 'True',
  );
}

/** The endpoints of a pool's serving pods: each pod's IP with each target port. */
export function poolEndpoints(ports: readonly number[], pods: readonly V1Pod[]): Set<string> {
  const found = new Set<string>();
  for (const pod of pods) {
    if (!isServingPod(pod)) continue;
    for (const port of ports) found.add(endpointAddress(pod.status?.podIP as string, port));
  }
  return found;
}

export interface KubernetesEndpointDiscoveryOptions {
  namespace: string;
  inferencePool: string;
  kubeConfig: KubeConfig;
  membership: EndpointMembership;
  log(message: string, details: Record<string, unknown>): void;
}

/**
 * The EPP's endpoints from the Kubernetes API: a list-then-watch of the named InferencePool (its selector
 * and target ports) and one of the pods its selector matches, each kept by the client's ListWatch cache.
 * Any change recomputes the endpoint set and hands it to the membership. A watch that fails keeps the
 * cache (and so the set) and is restarted with backoff, resuming from its last resourceVersion; an outage
 * is logged once, and its end once.
 */
export class KubernetesEndpointDiscovery {
  private readonly watch: Watch;
  private readonly core: CoreV1Api;
  private readonly custom: CustomObjectsApi;
  private readonly pool: ListWatch<InferencePool>;
  private pods: ListWatch<V1Pod> | undefined;
  private podSelector = '';
  private podsStarted: Promise<void> = Promise.resolve();
  private recomputeQueued = false;
  private readonly failing = new Set<string>();
  /** The wait before each kind's next restart, while its watch keeps failing. */
  private readonly retryDelayMs = new Map<string, number>();
  private closed = false;
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(private readonly options: KubernetesEndpointDiscoveryOptions) {
    const { kubeConfig, namespace, inferencePool } = options;
    this.watch = new Watch(kubeConfig);
    this.core = kubeConfig.makeApiClient(CoreV1Api);
    this.custom = kubeConfig.makeApiClient(CustomObjectsApi);
    const fieldSelector = `metadata.name=${inferencePool}`;
    this.pool = new ListWatch<InferencePool>(
      `/apis/${poolGroup}/${poolVersion}/namespaces/${namespace}/${poolPlural}`,
      this.watch,
      () =>
        this.custom.listNamespacedCustomObject({
          group: poolGroup,
          version: poolVersion,
          namespace,
          plural: poolPlural,
          fieldSelector,
        }) as Promise<KubernetesListObject<InferencePool>>,
      false,
      undefined,
      fieldSelector,
    );
    this.pool.on('change', () => this.onPoolChange());
    this.keepWatching(this.pool, 'InferencePool', () => this.pool);
  }

  /** Lists the pool and its pods (awaited: the EPP starts with the endpoints found), then watches. */
  async start(): Promise<void> {
    await this.startWatch(this.pool, 'InferencePool');
    await this.podsStarted;
    await this.options.membership.reconcile(this.endpointSet());
  }

  /** The discovered members, in the order they joined. */
  get endpoints(): string[] {
    return this.options.membership.endpoints;
  }

  close(): void {
    this.closed = true;
    for (const timer of this.timers) clearTimeout(timer);
    void this.pool.stop();
    void this.pods?.stop();
  }

  private currentPool(): InferencePool | undefined {
    return this.pool
      .list(this.options.namespace)
      .find((pool) => pool.metadata?.name === this.options.inferencePool);
  }

  /** The endpoints the pool and its pods give now; none while the pool is absent or selects nothing. */
  private endpointSet(): Set<string> {
    const pool = this.currentPool();
    if (pool === undefined || this.pods === undefined) return new Set();
    const ports = (pool.spec?.targetPorts ?? [])
      .map((port) => port.number)
      .filter((port): port is number => Number.isInteger(port) && (port as number) > 0);
    return poolEndpoints(ports, this.pods.list(this.options.namespace));
  }

  /** A new selector means another set of pods: their watch is replaced; other changes recompute. */
  private onPoolChange(): void {
    if (this.closed) return;
    const selector = labelSelectorOf(this.currentPool()?.spec?.selector?.matchLabels);
    if (selector !== this.podSelector || (selector !== '' && this.pods === undefined)) {
      this.podSelector = selector;
      void this.pods?.stop();
      this.pods = undefined;
      // An empty selector would match every pod of the namespace, not the pool's.
      if (selector !== '') {
        const pods = new ListWatch<V1Pod>(
          `/api/v1/namespaces/${this.options.namespace}/pods`,
          this.watch,
          () => this.core.listNamespacedPod({ namespace: this.options.namespace, labelSelector: selector }),
          false,
          selector,
        );
        pods.on('change', () => this.recomputeSoon());
        this.keepWatching(pods, 'Pods', () => this.pods);
        this.pods = pods;
        this.podsStarted = this.startWatch(pods, 'Pods');
      }
    }
    this.recomputeSoon();
  }

  /** Once per turn of the event loop: a list delivers its items as one event each. */
  private recomputeSoon(): void {
    if (this.recomputeQueued || this.closed) return;
    this.recomputeQueued = true;
    setImmediate(() => {
      this.recomputeQueued = false;
      if (this.closed) return;
      void this.options.membership.reconcile(this.endpointSet());
    });
  }

  /** Starts (or restarts) a watch; one that began without an error ends its kind's outage. */
  private async startWatch(informer: ListWatch<KubernetesObject>, kind: string): Promise<void> {
    let failed = false;
    const onError = () => {
      failed = true;
    };
    informer.on('error', onError);
    try {
      await informer.start();
    } finally {
      informer.off('error', onError);
    }
    if (failed || this.closed) return;
    this.retryDelayMs.delete(kind);
    if (this.failing.delete(kind)) {
      this.options.log('EPP endpoint discovery: the Kubernetes watch works again', { kind });
      this.recomputeSoon();
    }
  }

  /**
   * ListWatch stops on an error (a refused connection, a 5xx, a broken stream); it is restarted here,
   * after a delay that doubles while it keeps failing, for as long as it is the current watch of its kind.
   */
  private keepWatching(
    informer: ListWatch<KubernetesObject>,
    kind: string,
    current: () => ListWatch<KubernetesObject> | undefined,
  ): void {
    informer.on('error', (error: unknown) => {
      if (this.closed || current() !== informer) return;
      if (!this.failing.has(kind)) {
        this.failing.add(kind);
        this.options.log(
          'EPP endpoint discovery: the Kubernetes watch failed; keeping the current endpoints',
          {
            kind,
            endpoints: this.options.membership.endpoints.length,
            error: error instanceof Error ? error.message : String(error),
          },
        );
      }
      const delayMs = this.retryDelayMs.get(kind) ?? firstRetryMs;
      this.retryDelayMs.set(kind, Math.min(delayMs * 2, maxRetryMs));
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        if (this.closed || current() !== informer) return;
        void this.startWatch(informer, kind);
      }, delayMs);
      timer.unref();
      this.timers.add(timer);
    });
  }
}

/**
 * Starts discovery for `epp.discovery.kubernetes`, its endpoints joining and leaving the gateway as
 * `gatewayMembership` (endpoint-membership.ts) does it. A pod's readiness comes from the API server,
 * not from a flapping answer: one that is no longer ready leaves at the first change that says so.
 */
export async function startKubernetesEndpointDiscovery(options: {
  kubernetes: { namespace: string; inferencePool: string; kubeconfig?: string | undefined };
  fixed: readonly string[];
  gateway: Gateway;
  directory: EndpointDirectory;
  createEngine: (address: string) => Promise<EngineAdapter>;
  log: (message: string, details: Record<string, unknown>) => void;
}): Promise<KubernetesEndpointDiscovery> {
  const { namespace, inferencePool, kubeconfig } = options.kubernetes;
  const kubeConfig = new KubeConfig();
  if (kubeconfig !== undefined) kubeConfig.loadFromFile(kubeconfig);
  else kubeConfig.loadFromCluster();
  const discovery = new KubernetesEndpointDiscovery({
    namespace,
    inferencePool,
    kubeConfig,
    membership: new EndpointMembership({
      fixed: new Set(options.fixed),
      absencesToLeave: 1,
      ...gatewayMembership(options),
      log: options.log,
    }),
    log: options.log,
  });
  await discovery.start();
  return discovery;
}
