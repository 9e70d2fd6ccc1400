// The four paths the overhead benchmark compares, each a way from the load generator to the same fake
// upstreams: direct, through Gravity, through the Portkey gateway and through nginx. Starts every process
// involved on 127.0.0.1 and describes each path by its address, request headers and proxy processes.

import { mkdtemp, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcessGroup, ManagedChild } from '../support/child-processes.js';
import { quoteArgument } from '../support/report-format.js';
import { type NginxProcess, portkeyCommand, startNginx } from './peer-gateways.js';
import type { RequestTarget } from './sse-load-client.js';

export const host = '127.0.0.1';
/** Gravity's model names for the two upstreams; the other paths pass the name through unread. */
export const fastModel = 'fake';
export const pacedModel = 'fake-paced';
const startTimeoutMs = 60_000;
const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const upstreamScript = fileURLToPath(new URL('../support/fake-openai-upstream.ts', import.meta.url));

export type PathName = 'direct' | 'gravity' | 'portkey' | 'nginx';
/** fast: the whole stream in one write; paced: a fixed delay between tokens. */
export type UpstreamKind = 'fast' | 'paced';

export const pathLabels: Record<PathName, string> = {
  direct: 'direct',
  gravity: 'Gravity',
  portkey: 'Portkey',
  nginx: 'nginx',
};
const pathOrder: PathName[] = ['direct', 'gravity', 'portkey', 'nginx'];

export interface ProxyPath {
  name: PathName;
  label: string;
  /** One keep-alive pool per path, replaced before each throughput round so none inherits stale sockets. */
  agent: http.Agent;
  target(upstream: UpstreamKind): RequestTarget;
  /** The proxy's processes (nginx: master and workers); none for the direct path. */
  pids(): number[];
  /** Before each round: look up processes that may have been replaced (nginx workers). */
  refresh(): void;
  commandLine: string;
}

export function newAgent(): http.Agent {
  return new http.Agent({ keepAlive: true, maxSockets: 1024, maxFreeSockets: 1024 });
}

function gravityConfig(fastUpstreamUrl: string, pacedUpstreamUrl: string): string {
  const engine = (baseUrl: string) => ({ type: 'openai-upstream', baseUrl, maxConcurrentRequests: 256 });
  // JSON is YAML: no quoting questions for the URLs. Metering stays at its default (on).
  return `${JSON.stringify(
    {
      engines: { up: engine(fastUpstreamUrl), paced: engine(pacedUpstreamUrl) },
      models: { [fastModel]: { engine: 'up' }, [pacedModel]: { engine: 'paced' } },
    },
    null,
    2,
  )}\n`;
}

export interface StartedPaths {
  upstreams: ManagedChild[];
  fastUpstreamUrl: string;
  pacedUpstreamUrl: string;
  /** Whether Gravity runs its TypeScript through tsx (rather than a build with plain node). */
  gravityThroughTsx: boolean;
}

/**
 * Starts both upstreams, then Gravity and the peers side by side, and adds each path to `proxies` as soon
 * as it is up (so a clean-up after a failed start still finds every pool). Every start is awaited even when
 * one fails, so none is left half-started.
 */
export async function startPaths(options: {
  children: ChildProcessGroup;
  proxies: ProxyPath[];
  workDir: string;
  env: NodeJS.ProcessEnv;
  /** e.g. ['taskset', '-c', '1']: runs each proxy on its own CPU. */
  proxyPrefix: string[];
  tokensPerResponse: number;
  interTokenDelayMs: number;
  gravityEntry: string;
  cpuProfileDir: string | null;
  portkey: boolean;
  nginxBinary: string | null;
  /** Called before nginx starts, so the clean-up can remove its folder and stop it. */
  onNginxDir: (dir: string) => void;
  onNginx: (nginx: NginxProcess) => void;
  onFatal: (error: Error) => void;
}): Promise<StartedPaths> {
  const { children, proxies, env, proxyPrefix } = options;
  const startUpstream = (kind: UpstreamKind, delayMs: number) =>
    children.start({
      name: `fake upstream (${kind})`,
      command: process.execPath,
      args: [
        '--import',
        'tsx',
        upstreamScript,
        '--port',
        '0',
        '--tokens',
        String(options.tokensPerResponse),
        '--delay-ms',
        String(delayMs),
      ],
      cwd: repoRoot,
      env,
      readyPattern: /^fake-upstream: listening on (\S+)/,
      startTimeoutMs,
    });
  const [fastUpstream, pacedUpstream] = await Promise.all([
    startUpstream('fast', 0),
    startUpstream('paced', options.interTokenDelayMs),
  ]);
  const fastUpstreamUrl = fastUpstream.ready[1] as string;
  const pacedUpstreamUrl = pacedUpstream.ready[1] as string;
  const upstreamUrl = (upstream: UpstreamKind) => (upstream === 'fast' ? fastUpstreamUrl : pacedUpstreamUrl);
  const upstreamPort = (upstream: UpstreamKind) => Number(new URL(upstreamUrl(upstream)).port);

  const node = (args: string[]) =>
    proxyPrefix.length > 0
      ? { command: proxyPrefix[0] as string, args: [...proxyPrefix.slice(1), process.execPath, ...args] }
      : { command: process.execPath, args };
  const commandLineOf = (command: { command: string; args: string[] }) =>
    [command.command, ...command.args].map(quoteArgument).join(' ');
  const pidsOf = (child: ManagedChild) => () => [child.process.pid as number];
  const chat = '/v1/chat/completions';
  const authorization = { authorization: 'Bearer x' };

  proxies.push({
    name: 'direct',
    label: pathLabels.direct,
    agent: newAgent(),
    target: (upstream) => ({ port: upstreamPort(upstream), path: chat, headers: authorization }),
    pids: () => [],
    refresh: () => {},
    commandLine: `${fastUpstreamUrl} and ${pacedUpstreamUrl}`,
  });

  const starting: Array<Promise<void>> = [];
  const gravityThroughTsx = /\.[cm]?ts$/.test(options.gravityEntry);
  const configPath = path.join(options.workDir, 'gravity.yaml');
  await writeFile(configPath, gravityConfig(fastUpstreamUrl, pacedUpstreamUrl));
  const gravityCommand = node([
    ...(options.cpuProfileDir ? ['--cpu-prof', '--cpu-prof-dir', options.cpuProfileDir] : []),
    ...(gravityThroughTsx ? ['--import', 'tsx'] : []),
    path.relative(repoRoot, options.gravityEntry),
    'serve',
    '--host',
    host,
    '--port',
    '0',
    '--config',
    configPath,
    '--data-dir',
    path.join(options.workDir, 'gravity-data'),
    '--log-level',
    'warn',
  ]);
  starting.push(
    children
      .start({
        name: 'Gravity',
        ...gravityCommand,
        cwd: repoRoot,
        env,
        readyPattern: /^gravity: listening on (\S+) models=/,
        startTimeoutMs,
      })
      .then((child) => {
        const url = new URL(child.ready[1] as string);
        if (url.hostname !== host) throw new Error(`Gravity listens on ${url.hostname}, expected ${host}`);
        proxies.push({
          name: 'gravity',
          label: pathLabels.gravity,
          agent: newAgent(),
          target: () => ({ port: Number(url.port), path: chat, headers: authorization }),
          pids: pidsOf(child),
          refresh: () => {},
          commandLine: commandLineOf(gravityCommand),
        });
      }),
  );

  if (options.portkey) {
    const { args, cwd } = portkeyCommand();
    const portkeyNode = node(args);
    starting.push(
      children
        .start({
          name: 'Portkey',
          ...portkeyNode,
          cwd,
          env,
          readyPattern: /Ready for connections/,
          startTimeoutMs,
        })
        .then((child) => {
          // The preload reports the address actually bound; Portkey itself prints localhost:<given port>.
          const bound = child.outputTail().match(/loopback-listen: listening on http:\/\/([\d.]+):(\d+)/);
          if (!bound || bound[1] !== host)
            throw new Error(`Portkey did not report a listen address on ${host}:\n${child.outputTail()}`);
          const port = Number(bound[2]);
          proxies.push({
            name: 'portkey',
            label: pathLabels.portkey,
            agent: newAgent(),
            target: (upstream) => ({
              port,
              path: chat,
              headers: {
                ...authorization,
                'x-portkey-provider': 'openai',
                'x-portkey-custom-host': upstreamUrl(upstream),
              },
            }),
            pids: pidsOf(child),
            refresh: () => {},
            commandLine: `(cd ${path.relative(repoRoot, cwd)} && ${commandLineOf(portkeyNode)})`,
          });
        }),
    );
  }

  if (options.nginxBinary) {
    const binary = options.nginxBinary;
    // Outside the work dir (mode 0700): nginx's workers may run as another user and must reach theirs.
    const dir = await mkdtemp(path.join(os.tmpdir(), 'gravity-overhead-nginx-'));
    options.onNginxDir(dir);
    // Lets a later run remove the folder should this one be killed outright.
    await writeFile(path.join(dir, 'owner-pid'), String(process.pid));
    starting.push(
      startNginx({
        binary,
        dir,
        fastUpstreamPort: upstreamPort('fast'),
        pacedUpstreamPort: upstreamPort('paced'),
        commandPrefix: proxyPrefix,
        startTimeoutMs,
        onUnexpectedExit: (description) => options.onFatal(new Error(description)),
      }).then((nginx) => {
        options.onNginx(nginx);
        proxies.push({
          name: 'nginx',
          label: pathLabels.nginx,
          agent: newAgent(),
          // nginx maps /paced/… to the paced upstream; the same request line otherwise.
          target: (upstream) => ({
            port: nginx.port,
            path: upstream === 'fast' ? chat : `/paced${chat}`,
            headers: authorization,
          }),
          pids: () => nginx.pids(),
          refresh: () => nginx.refreshWorkers(),
          commandLine: [...proxyPrefix, binary, '-c', `${dir}/nginx.conf`, '-p', `${dir}/`]
            .map(quoteArgument)
            .join(' '),
        });
      }),
    );
  }

  const results = await Promise.allSettled(starting);
  for (const result of results) if (result.status === 'rejected') throw result.reason;
  proxies.sort((a, b) => pathOrder.indexOf(a.name) - pathOrder.indexOf(b.name));
  return { upstreams: [fastUpstream, pacedUpstream], fastUpstreamUrl, pacedUpstreamUrl, gravityThroughTsx };
}
