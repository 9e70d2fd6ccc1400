import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { Ajv } from 'ajv';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { emulatedFleetDocument, parseEmulateOption } from '../src/config/emulate-option.js';
import { loadConfig } from '../src/config/load-config.js';
import { extProcServices } from '../src/epp/ext-proc-protocol.js';
import { destinationList, EnvoyStream, requestHeaders } from './support/envoy-ext-proc.js';
import { freeLoopbackPort } from './support/free-port.js';
import { spawnGravity } from './support/gravity-process.js';
import { type KubernetesObject, renderChart } from './support/helm-template.js';
import { inferencePoolSchema } from './support/inference-pool-schema.js';
import { FakeKubernetesApi } from './support/kubernetes-api-stand-in.js';
import { startLoopbackModelServer } from './support/loopback-model-server.js';

// The Helm chart (deploy/helm/gravity), rendered as `helm template` would (test/support/helm-template.ts:
// no helm binary can be had here), its values checked against values.schema.json as Helm checks them, and
// every manifest validated against the Kubernetes schemas (kubernetes-models; the Prometheus Operator's
// for the ServiceMonitor; the InferencePool's v1 API as a JSON Schema). Beyond the schemas: the objects
// must agree with each other (selectors, port names, the HPA's target, the InferencePool's picker
// reference, the Role the watch needs) and with Gravity, whose own config loader must accept the rendered
// gravity.yaml. Last, the rendered gateway and EPP are started the way their Deployment runs them.

const repositoryRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const chartDirectory = path.join(repositoryRoot, 'deploy/helm/gravity');
const release = { name: 'gravity', namespace: 'inference' };

const ajv = new Ajv({ allErrors: true, strict: false });
const validateValues = ajv.compile(
  JSON.parse(readFileSync(path.join(chartDirectory, 'values.schema.json'), 'utf8')),
);
const validateInferencePool = ajv.compile(inferencePoolSchema);

const kubernetesModels: Record<string, new (data: never) => { validate(): void }> = {
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'apps/v1/Deployment': Deployment,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
};

/** Throws, naming the object and the field, unless the object is valid for its kind's schema. */
function validateManifest(object: KubernetesObject): void {
  const key = `${object.apiVersion}/${object.kind}`;
  if (key === 'inference.networking.k8s.io/v1/InferencePool') {
    if (!validateInferencePool(object))
      throw new Error(`${key} ${object.metadata.name}: ${ajv.errorsText(validateInferencePool.errors)}`);
    return;
  }
  const Model = kubernetesModels[key];
  if (!Model) throw new Error(`no schema to validate ${key} against`);
  new Model(object as never).validate();
}

interface Rendered {
  manifests: KubernetesObject[];
  notes: string;
  one(kind: string): KubernetesObject & Record<string, any>;
  kinds(): string[];
  /** gravity.yaml from the ConfigMap, parsed. */
  gravityYaml(): Record<string, any>;
}

async function render(values: Record<string, unknown> = {}): Promise<Rendered> {
  // Helm validates the coalesced values against values.schema.json before rendering.
  const defaults = parseYaml(readFileSync(path.join(chartDirectory, 'values.yaml'), 'utf8'));
  const { manifests, notes, values: coalesced } = await renderChart(chartDirectory, release, values);
  if (!validateValues(coalesced)) throw new Error(`values: ${ajv.errorsText(validateValues.errors)}`);
  expect(defaults).toBeTruthy();
  const one = (kind: string) => {
    const found = manifests.filter((object) => object.kind === kind);
    expect(found, kind).toHaveLength(1);
    return found[0] as KubernetesObject & Record<string, any>;
  };
  return {
    manifests,
    notes,
    one,
    kinds: () => manifests.map((object) => object.kind).sort(),
    gravityYaml: () => parseYaml((one('ConfigMap').data as Record<string, string>)['gravity.yaml'] as string),
  };
}

const example = (name: string) =>
  parseYaml(readFileSync(path.join(chartDirectory, 'examples', name), 'utf8')) as Record<string, unknown>;

function container(rendered: Rendered) {
  return rendered.one('Deployment').spec.template.spec.containers[0];
}

/** The labels a selector names are all on the Deployment's pods. */
function selectsThePods(selector: Record<string, string>, rendered: Rendered): boolean {
  const labels = rendered.one('Deployment').spec.template.metadata.labels as Record<string, string>;
  return (
    Object.keys(selector).length > 0 &&
    Object.entries(selector).every(([key, value]) => labels[key] === value)
  );
}

/** Gravity's own loader on the rendered gravity.yaml (the environment the Deployment sets, if any). */
function loadRenderedConfig(rendered: Rendered, env: NodeJS.ProcessEnv = {}) {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'gravity-chart-')), 'gravity.yaml');
  writeFileSync(file, (rendered.one('ConfigMap').data as Record<string, string>)['gravity.yaml'] as string);
  return loadConfig({ configPath: file }, env);
}

describe('Helm chart: values', () => {
  it('values.yaml and every example follow values.schema.json; bad values are refused by field', async () => {
    for (const file of readdirSync(path.join(chartDirectory, 'examples'))) await render(example(file));
    await expect(render({ mode: 'router' })).rejects.toThrow(/mode/);
    await expect(
      render({ epp: { inferencePool: { targetPorts: [1, 2, 3, 4, 5, 6, 7, 8, 9] } } }),
    ).rejects.toThrow(/targetPorts/);
    await expect(render({ service: { port: 70_000 } })).rejects.toThrow(/port/);
  });

  it('refuses combinations that cannot work, saying why', async () => {
    await expect(render({ replicaCount: 3 })).rejects.toThrow(/ledger.store: postgres/);
    await expect(render({ autoscaling: { enabled: true } })).rejects.toThrow(/ledger.store: postgres/);
    await expect(render({ ledger: { store: 'postgres' } })).rejects.toThrow(/ledger.existingSecret/);
    await expect(render({ state: { store: 'redis' } })).rejects.toThrow(/state.existingSecret/);
    await expect(
      render({ mode: 'epp', epp: { inferencePool: { selector: { app: 'vllm' } } } }),
    ).rejects.toThrow(/epp.models/);
    await expect(render({ mode: 'epp', epp: { models: ['m'] } })).rejects.toThrow(/selector/);
    await expect(render({ mode: 'epp', epp: { models: ['m'], discovery: 'dns' } })).rejects.toThrow(
      /epp.dns.name/,
    );
  });
});

describe('Helm chart: gateway mode', () => {
  it('renders valid objects whose Service, probes, mounts and gravity.yaml agree', async () => {
    const rendered = await render();
    expect(rendered.kinds()).toEqual(['ConfigMap', 'Deployment', 'Service', 'ServiceAccount']);
    for (const object of rendered.manifests) validateManifest(object);

    const service = rendered.one('Service');
    const gravity = container(rendered);
    expect(selectsThePods(service.spec.selector, rendered)).toBe(true);
    const containerPorts = new Map<string, number>(
      gravity.ports.map((entry: { name: string; containerPort: number }) => [
        entry.name,
        entry.containerPort,
      ]),
    );
    for (const entry of service.spec.ports) expect(containerPorts.has(entry.targetPort)).toBe(true);

    const config = loadRenderedConfig(rendered);
    expect(config.server.port).toBe(containerPorts.get('http'));
    expect(config.metrics.port).toBe(containerPorts.get('metrics'));
    const mounts = new Map<string, string>(
      gravity.volumeMounts.map((mount: { name: string; mountPath: string }) => [mount.name, mount.mountPath]),
    );
    expect(config.dataDir).toBe(mounts.get('data'));
    const configPath = gravity.args[gravity.args.indexOf('--config') + 1];
    expect(path.dirname(configPath)).toBe(mounts.get('config'));
    expect(gravity.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http' });
    // Gravity's embedded defaults: the user's config was empty.
    expect(Object.keys(config.models)).toContain('gravity-tiny');
    // No API token in a pod that never calls the Kubernetes API.
    expect(rendered.one('ServiceAccount').automountServiceAccountToken).toBe(false);
  });

  it('as a fleet: stores from Secrets, an HPA on a Gravity metric, a PDB and a ServiceMonitor that match', async () => {
    const rendered = await render(example('gateway-fleet.yaml'));
    expect(rendered.kinds()).toEqual([
      'ConfigMap',
      'Deployment',
      'HorizontalPodAutoscaler',
      'PodDisruptionBudget',
      'Service',
      'ServiceAccount',
      'ServiceMonitor',
    ]);
    for (const object of rendered.manifests) validateManifest(object);

    const deployment = rendered.one('Deployment');
    const hpa = rendered.one('HorizontalPodAutoscaler');
    expect(hpa.spec.scaleTargetRef).toEqual({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      name: deployment.metadata.name,
    });
    expect(hpa.spec.metrics[0].pods.metric.name).toBe('gravity_requests_in_flight');
    // The autoscaler owns the replica count.
    expect(deployment.spec.replicas).toBeUndefined();
    expect(selectsThePods(rendered.one('PodDisruptionBudget').spec.selector.matchLabels, rendered)).toBe(
      true,
    );

    const service = rendered.one('Service');
    const monitor = rendered.one('ServiceMonitor');
    const serviceLabels = service.metadata.labels as Record<string, string>;
    for (const [key, value] of Object.entries(monitor.spec.selector.matchLabels as Record<string, string>))
      expect(serviceLabels[key]).toBe(value);
    const scraped = service.spec.ports.find(
      (entry: { name: string }) => entry.name === monitor.spec.endpoints[0].port,
    );
    expect(scraped).toBeDefined();

    const env = new Map<string, any>(
      container(rendered).env.map((entry: { name: string }) => [entry.name, entry]),
    );
    expect(env.get('GRAVITY_LEDGER_URL').valueFrom.secretKeyRef).toEqual({
      name: 'gravity-postgres',
      key: 'url',
    });
    expect(env.get('GRAVITY_STATE_URL').valueFrom.secretKeyRef).toEqual({
      name: 'gravity-redis',
      key: 'url',
    });
    const config = loadRenderedConfig(rendered, {
      GRAVITY_LEDGER_URL: 'postgres://gravity:secret@postgres:5432/gravity',
      GRAVITY_STATE_URL: 'redis://redis:6379',
    });
    expect(config.ledger.store).toBe('postgres');
    expect(config.state.store).toBe('redis');
    // The user's own settings pass through beside the chart's.
    expect(Object.keys(config.engines).sort()).toEqual(['vllm-a', 'vllm-b']);
    expect(config.routing.policy).toBe('prefix-hash');
    expect(config.metrics.port).toBe(scraped.port);
  });
});

describe('Helm chart: Endpoint Picker mode', () => {
  it('renders an InferencePool whose picker is Gravity’s ext_proc port, and the Role its watch needs', async () => {
    const rendered = await render(example('epp.yaml'));
    expect(rendered.kinds()).toEqual([
      'ConfigMap',
      'Deployment',
      'InferencePool',
      'Role',
      'RoleBinding',
      'Service',
      'ServiceAccount',
      'ServiceMonitor',
    ]);
    for (const object of rendered.manifests) validateManifest(object);

    const pool = rendered.one('InferencePool');
    const service = rendered.one('Service');
    const extProc = service.spec.ports.find((entry: { name: string }) => entry.name === 'ext-proc');
    expect(pool.spec.endpointPickerRef).toMatchObject({
      kind: 'Service',
      name: service.metadata.name,
      port: { number: extProc.port },
      failureMode: 'FailClose',
    });
    expect(extProc.appProtocol).toBe('kubernetes.io/h2c');
    // The pool selects the model servers, never Gravity's own pods.
    expect(selectsThePods(pool.spec.selector.matchLabels, rendered)).toBe(false);

    const gravity = container(rendered);
    const extProcContainerPort = gravity.ports.find((entry: { name: string }) => entry.name === 'ext-proc');
    expect(gravity.readinessProbe.grpc).toEqual({
      port: extProcContainerPort.containerPort,
      service: 'readiness',
    });
    expect(gravity.livenessProbe.grpc).toEqual({
      port: extProcContainerPort.containerPort,
      service: 'liveness',
    });

    const rules = rendered.one('Role').rules as {
      apiGroups: string[];
      resources: string[];
      verbs: string[];
    }[];
    for (const [group, resource] of [
      ['inference.networking.k8s.io', 'inferencepools'],
      ['', 'pods'],
    ] as const) {
      const rule = rules.find(
        (entry) => entry.apiGroups.includes(group) && entry.resources.includes(resource),
      );
      expect(rule?.verbs).toEqual(expect.arrayContaining(['get', 'list', 'watch']));
    }
    const binding = rendered.one('RoleBinding');
    expect(binding.roleRef.name).toBe(rendered.one('Role').metadata.name);
    expect(binding.subjects[0].name).toBe(rendered.one('Deployment').spec.template.spec.serviceAccountName);
    expect(rendered.one('ServiceAccount').automountServiceAccountToken).toBe(true);

    const config = loadRenderedConfig(rendered);
    expect(config.epp?.port).toBe(extProcContainerPort.containerPort);
    expect(config.epp?.discovery?.kubernetes).toMatchObject({
      namespace: release.namespace,
      inferencePool: pool.metadata.name,
    });
    expect(rendered.notes).toContain(pool.metadata.name);
  });

  it('with DNS discovery: no InferencePool watch, so no Role and no API token', async () => {
    const rendered = await render({
      mode: 'epp',
      epp: {
        models: ['m'],
        discovery: 'dns',
        dns: { name: 'vllm.inference.svc.cluster.local' },
        inferencePool: { selector: { app: 'vllm' } },
      },
    });
    for (const object of rendered.manifests) validateManifest(object);
    expect(rendered.kinds()).not.toContain('Role');
    expect(rendered.one('ServiceAccount').automountServiceAccountToken).toBe(false);
    expect(loadRenderedConfig(rendered).epp?.discovery?.dns).toMatchObject({
      name: 'vllm.inference.svc.cluster.local',
      port: 8000,
    });
  });
});

/** The Deployment's command line, with the config file at `configFile` and the data folder at `dataDir`. */
function commandLine(rendered: Rendered, configFile: string, dataDir: string): string[] {
  const args = [...(container(rendered).args as string[])];
  args[args.indexOf('--config') + 1] = configFile;
  return [...args, '--data-dir', dataDir];
}

function writeRenderedConfig(rendered: Rendered): { configFile: string; dataDir: string } {
  const directory = mkdtempSync(path.join(tmpdir(), 'gravity-chart-run-'));
  const configFile = path.join(directory, 'gravity.yaml');
  writeFileSync(
    configFile,
    (rendered.one('ConfigMap').data as Record<string, string>)['gravity.yaml'] as string,
  );
  return { configFile, dataDir: directory };
}

async function eventually<T>(attempt: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await attempt();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`not in time: ${String(lastError)}`);
}

describe('Helm chart: the rendered pods run', () => {
  it('the gateway starts from its Deployment’s command and ConfigMap, and answers its probes and scrapes', async () => {
    const [httpPort, metricsPort] = [await freeLoopbackPort(), await freeLoopbackPort()];
    const model = 'llama-3.1-8b';
    const rendered = await render({
      service: { port: httpPort, metricsPort },
      config: emulatedFleetDocument(parseEmulateOption(`h200:${model}:2`)),
    });
    const { configFile, dataDir } = writeRenderedConfig(rendered);
    // The pod listens on every interface; here the API listens on loopback only.
    const gravity = spawnGravity(commandLine(rendered, configFile, dataDir), { GRAVITY_HOST: '127.0.0.1' });
    try {
      const base = `http://127.0.0.1:${httpPort}`;
      const probes = container(rendered);
      await eventually(async () =>
        (await fetch(`${base}${probes.readinessProbe.httpGet.path}`)).ok ? true : undefined,
      );
      expect((await fetch(`${base}${probes.livenessProbe.httpGet.path}`)).status).toBe(200);
      const completion = await fetch(`${base}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hello' }], max_tokens: 8 }),
      });
      expect(completion.status).toBe(200);
      const monitorPath = '/metrics';
      const scrape = await fetch(`http://127.0.0.1:${metricsPort}${monitorPath}`);
      expect(scrape.status).toBe(200);
      expect(await scrape.text()).toMatch(/^gravity_requests_total\{.*\} 1$/m);
    } finally {
      gravity.child.kill('SIGTERM');
      await gravity.exited;
    }
    // SIGTERM, as Kubernetes stops a pod: a clean exit within the grace period.
    expect((await gravity.exited).code).toBe(0);
  });

  it('the EPP starts, watches the InferencePool the chart created, answers its gRPC probes and picks a pod', async () => {
    const model = 'chart-epp-model';
    const modelServer = await startLoopbackModelServer(model, '127.0.0.2', 0);
    const api = new FakeKubernetesApi(release.namespace);
    await api.listen();
    const kubeconfig = path.join(mkdtempSync(path.join(tmpdir(), 'gravity-chart-k8s-')), 'kubeconfig.json');
    api.writeKubeconfig(kubeconfig);
    const [httpPort, metricsPort, extProcPort] = [
      await freeLoopbackPort(),
      await freeLoopbackPort(),
      await freeLoopbackPort(),
    ];
    const rendered = await render({
      mode: 'epp',
      service: { port: httpPort, metricsPort, extProcPort },
      epp: { models: [model], inferencePool: { selector: { app: 'vllm' }, targetPorts: [modelServer.port] } },
      // Outside a cluster the watch needs a kubeconfig; in a pod it reads the ServiceAccount's token.
      config: { epp: { discovery: { kubernetes: { kubeconfig } } } },
    });
    // The API server holds what `helm install` created, and one ready model-server pod.
    api.change('pools', 'ADDED', rendered.one('InferencePool') as never);
    api.change('pods', 'ADDED', {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'vllm-0', labels: { app: 'vllm' } },
      status: { phase: 'Running', podIP: '127.0.0.2', conditions: [{ type: 'Ready', status: 'True' }] },
    });
    const { configFile, dataDir } = writeRenderedConfig(rendered);
    const gravity = spawnGravity(commandLine(rendered, configFile, dataDir), { GRAVITY_HOST: '127.0.0.1' });
    const services = extProcServices();
    const Client = grpc.makeGenericClientConstructor({ ...services.extProc, ...services.health }, 'Epp');
    const client = new Client(`127.0.0.1:${extProcPort}`, grpc.credentials.createInsecure()) as unknown as {
      Check(
        request: { service: string },
        callback: (error: Error | null, answer?: { status: number }) => void,
      ): void;
      Process(): ConstructorParameters<typeof EnvoyStream>[0];
      close(): void;
    };
    try {
      const probes = container(rendered);
      const check = (service: string) =>
        new Promise<number | undefined>((resolve, reject) =>
          client.Check({ service }, (error, answer) => (error ? reject(error) : resolve(answer?.status))),
        );
      const SERVING = 1;
      await eventually(async () =>
        (await check(probes.readinessProbe.grpc.service)) === SERVING ? true : undefined,
      );
      expect(await check(probes.livenessProbe.grpc.service)).toBe(SERVING);

      const picked = await eventually(async () => {
        const envoy = new EnvoyStream(client.Process());
        envoy.send(requestHeaders('/v1/chat/completions', { bodyMode: 2 }));
        await envoy.next();
        envoy.send({
          request_body: {
            body: Buffer.from(JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] })),
            end_of_stream: true,
          },
        });
        const picked = destinationList(await envoy.next());
        envoy.call.cancel();
        return typeof picked === 'number' ? undefined : picked.join(',');
      });
      expect(picked).toBe(`127.0.0.2:${modelServer.port}`);
    } finally {
      client.close();
      gravity.child.kill('SIGTERM');
      await gravity.exited;
      await api.close();
      await modelServer.close();
    }
  });
});
