// The paths the overhead benchmark compares, each a way from the load client to the same fake upstreams:
// direct, through Gravity (the working tree, and a base commit when asked), through nginx and through the
// Portkey gateway. Starts every process involved on 127.0.0.1 and describes each path by the request it
// sends and the proxy processes whose CPU and memory it reads.

import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { GravityBuild } from '../support/ab-rounds.js';
import { type ChildProcessGroup, startFakeUpstream, startGravity } from '../support/child-processes.js';
import { chatBody, type LoadRequest } from '../support/load-client.js';
import { quoteArgument } from '../support/report-format.js';
import { portkeyCommand, startNginx } from './peer-gateways.js';

export const host = '127.0.0.1';
/** Gravity's model names for the two upstreams; the other paths pass the name through unread. */
const fastModel = 'fake';
const pacedModel = 'fake-paced';
const chatPath = '/v1/chat/completions';
const authorization = { authorization: 'Bearer x' };

/** fast: the whole stream in one write; paced: a fixed delay between tokens. */
export type UpstreamKind = 'fast' | 'paced';
export type ResponseMode = 'stream' | 'json';

export interface ProxyPath {
  /** direct, gravity, gravity-base, nginx or portkey. */
  name: string;
  label: string;
  request(upstream: UpstreamKind, mode: ResponseMode): LoadRequest;
  /** The proxy's processes (nginx: master and workers); none for the direct path. */
  pids(): number[];
  /** Before each round: look up processes that may have been replaced (nginx workers). */
  refresh?(): void;
  commandLine: string;
}

/**
 * Starts both upstreams, then every Gravity build and the peers side by side, and adds each path to
 * `paths` as soon as it is up. Every start is awaited even when one fails, so none is left half-started.
 */
export async function startPaths(options: {
  children: ChildProcessGroup;
  paths: ProxyPath[];
  workDir: string;
  /** e.g. ['taskset', '-c', '1']: runs each proxy on its own CPU. */
  proxyPrefix: string[];
  tokensPerResponse: number;
  interTokenDelayMs: number;
  /** The first is the working tree ('gravity'), the second a base commit ('gravity-base'). */
  builds: GravityBuild[];
  cpuProfileDir: string | null;
  portkey: boolean;
  nginxBinary: string | null;
}): Promise<{ describe: string }> {
  const { children, paths, workDir, proxyPrefix, tokensPerResponse } = options;
  const [fastUrl, pacedUrl] = await Promise.all([
    startFakeUpstream(children, { name: 'fast', tokens: tokensPerResponse, delayMs: 0 }),
    startFakeUpstream(children, {
      name: 'paced',
      tokens: tokensPerResponse,
      delayMs: options.interTokenDelayMs,
    }),
  ]);
  const upstreamUrl = (kind: UpstreamKind) => (kind === 'fast' ? fastUrl : pacedUrl);
  const upstreamPort = (kind: UpstreamKind) => Number(new URL(upstreamUrl(kind)).port);
  const commandLine = (argv: string[]) => argv.map(quoteArgument).join(' ');
  /** The same body on every path; `route` gives where (and with what headers) each proxy takes it. */
  const addPath = (
    proxy: Omit<ProxyPath, 'request'>,
    route: (upstream: UpstreamKind) => { port: number; path?: string; headers?: Record<string, string> },
  ) =>
    paths.push({
      ...proxy,
      request: (upstream, mode) => ({
        path: chatPath,
        headers: authorization,
        ...route(upstream),
        body: chatBody({
          model: upstream === 'fast' ? fastModel : pacedModel,
          prompt: 'Write one short sentence about gravity.',
          maxTokens: tokensPerResponse,
          stream: mode === 'stream',
        }),
      }),
    });

  addPath(
    { name: 'direct', label: 'direct', pids: () => [], commandLine: `${fastUrl} and ${pacedUrl}` },
    (upstream) => ({
      port: upstreamPort(upstream),
    }),
  );

  const configPath = path.join(workDir, 'gravity.yaml');
  const engine = (baseUrl: string) => ({ type: 'openai-upstream', baseUrl, maxConcurrentRequests: 256 });
  // JSON is YAML: no quoting questions for the URLs. Metering stays at its default (on).
  await writeFile(
    configPath,
    JSON.stringify({
      engines: { up: engine(fastUrl), paced: engine(pacedUrl) },
      models: { [fastModel]: { engine: 'up' }, [pacedModel]: { engine: 'paced' } },
    }),
  );
  const starting = options.builds.map(async (build, index) => {
    const name = index === 0 ? 'gravity' : 'gravity-base';
    const gravity = await startGravity(children, {
      name: `Gravity ${build.label}`,
      build,
      prefix: proxyPrefix,
      nodeArgs:
        index === 0 && options.cpuProfileDir ? ['--cpu-prof', '--cpu-prof-dir', options.cpuProfileDir] : [],
      configPath,
      dataDir: path.join(workDir, `data-${name}`),
    });
    const pid = gravity.child.process.pid as number;
    const commandLineText = `(cd ${build.dir} && ${commandLine(gravity.argv)})`;
    addPath(
      { name, label: `Gravity ${build.label}`, pids: () => [pid], commandLine: commandLineText },
      () => ({
        port: gravity.port,
      }),
    );
  });

  if (options.portkey) {
    const { args, cwd } = portkeyCommand();
    const argv = [...proxyPrefix, process.execPath, ...args];
    const start = async () => {
      const child = await children.start({
        name: 'Portkey',
        command: argv[0] as string,
        args: argv.slice(1),
        cwd,
        env: process.env,
        readyPattern: /Ready for connections/,
        startTimeoutMs: 60_000,
      });
      // The preload reports the address actually bound; Portkey itself prints localhost:<given port>.
      const bound = child.outputTail().match(/loopback-listen: listening on http:\/\/([\d.]+):(\d+)/);
      if (!bound || bound[1] !== host)
        throw new Error(`Portkey did not report a listen address on ${host}:\n${child.outputTail()}`);
      const pid = child.process.pid as number;
      addPath(
        {
          name: 'portkey',
          label: 'Portkey',
          pids: () => [pid],
          commandLine: `(cd ${cwd} && ${commandLine(argv)})`,
        },
        (upstream) => ({
          port: Number(bound[2]),
          headers: {
            ...authorization,
            'x-portkey-provider': 'openai',
            'x-portkey-custom-host': upstreamUrl(upstream),
          },
        }),
      );
    };
    starting.push(start());
  }

  if (options.nginxBinary) {
    // nginx's workers run as nobody when started as root: they must reach their temp folders in here.
    await chmod(workDir, 0o755);
    const start = async () => {
      const nginx = await startNginx(children, {
        binary: options.nginxBinary as string,
        dir: path.join(workDir, 'nginx'),
        fastUpstreamPort: upstreamPort('fast'),
        pacedUpstreamPort: upstreamPort('paced'),
        commandPrefix: proxyPrefix,
      });
      const proxy = { name: 'nginx', label: 'nginx', commandLine: commandLine(nginx.argv) };
      // nginx maps /paced/… to the paced upstream; the same request line otherwise.
      addPath({ ...proxy, pids: nginx.pids, refresh: nginx.refreshWorkers }, (upstream) => ({
        port: nginx.port,
        path: upstream === 'fast' ? chatPath : `/paced${chatPath}`,
      }));
    };
    starting.push(start());
  }

  const results = await Promise.allSettled(starting);
  for (const result of results) if (result.status === 'rejected') throw result.reason;
  const order = ['direct', 'gravity', 'gravity-base', 'nginx', 'portkey'];
  paths.sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
  return {
    describe:
      `bench/support/fake-openai-upstream.ts, ${tokensPerResponse} tokens per response: fast (whole stream in ` +
      `one write) at ${fastUrl}, paced (${options.interTokenDelayMs} ms between tokens) at ${pacedUrl}`,
  };
}
