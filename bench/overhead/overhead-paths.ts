// The paths the overhead benchmark compares, each a way from the load client to the same fake upstreams:
// direct, through Gravity (the working tree, and a base commit when asked), through nginx and through the
// Portkey gateway. Starts every process involved on 127.0.0.1 and describes each path by the request it
// sends and the proxy processes whose CPU and memory it reads.

import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type GravityBuild, repoRoot } from '../support/ab-rounds.js';
import type { ChildProcessGroup, ManagedChild } from '../support/child-processes.js';
import { chatBody, type LoadRequest } from '../support/load-client.js';
import { quoteArgument } from '../support/report-format.js';
import { type NginxProcess, portkeyCommand, startNginx } from './peer-gateways.js';

export const host = '127.0.0.1';
/** Gravity's model names for the two upstreams; the other paths pass the name through unread. */
const fastModel = 'fake';
const pacedModel = 'fake-paced';
const startTimeoutMs = 60_000;
const chatPath = '/v1/chat/completions';
const authorization = { authorization: 'Bearer x' };
const upstreamScript = fileURLToPath(new URL('../support/fake-openai-upstream.ts', import.meta.url));

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
  refresh(): void;
  commandLine: string;
}

function gravityConfig(fastUpstreamUrl: string, pacedUpstreamUrl: string): string {
  const engine = (baseUrl: string) => ({ type: 'openai-upstream', baseUrl, maxConcurrentRequests: 256 });
  // JSON is YAML: no quoting questions for the URLs. Metering stays at its default (on).
  return JSON.stringify({
    engines: { up: engine(fastUpstreamUrl), paced: engine(pacedUpstreamUrl) },
    models: { [fastModel]: { engine: 'up' }, [pacedModel]: { engine: 'paced' } },
  });
}

/**
 * Starts both upstreams, then every Gravity build and the peers side by side, and adds each path to
 * `paths` as soon as it is up (so a clean-up after a failed start still finds it). Every start is awaited
 * even when one fails, so none is left half-started.
 */
export async function startPaths(options: {
  children: ChildProcessGroup;
  paths: ProxyPath[];
  workDir: string;
  env: NodeJS.ProcessEnv;
  /** e.g. ['taskset', '-c', '1']: runs each proxy on its own CPU. */
  proxyPrefix: string[];
  tokensPerResponse: number;
  interTokenDelayMs: number;
  /** The first is the working tree ('gravity'), the second a base commit ('gravity-base'). */
  builds: GravityBuild[];
  cpuProfileDir: string | null;
  portkey: boolean;
  nginxBinary: string | null;
  onNginx: (nginx: NginxProcess, dir: string) => void;
  onFatal: (error: Error) => void;
}): Promise<{ upstreams: ManagedChild[]; describe: string }> {
  const { children, paths, env, proxyPrefix, tokensPerResponse } = options;
  const startUpstream = (kind: UpstreamKind, delayMs: number) =>
    children.start({
      name: `fake upstream (${kind})`,
      command: process.execPath,
      args: [
        '--import',
        'tsx',
        upstreamScript,
        '--tokens',
        String(tokensPerResponse),
        '--delay-ms',
        `${delayMs}`,
      ],
      cwd: repoRoot,
      env,
      readyPattern: /^fake-upstream: listening on (\S+)/,
      startTimeoutMs,
    });
  const upstreams = await Promise.all([
    startUpstream('fast', 0),
    startUpstream('paced', options.interTokenDelayMs),
  ]);
  const upstreamUrl = (kind: UpstreamKind) => upstreams[kind === 'fast' ? 0 : 1]!.ready[1] as string;
  const upstreamPort = (kind: UpstreamKind) => Number(new URL(upstreamUrl(kind)).port);
  const body = (upstream: UpstreamKind, mode: ResponseMode) =>
    chatBody({
      model: upstream === 'fast' ? fastModel : pacedModel,
      prompt: 'Write one short sentence about gravity.',
      maxTokens: tokensPerResponse,
      stream: mode === 'stream',
    });
  const node = (args: string[]) => [...proxyPrefix, process.execPath, ...args];
  const commandLine = (argv: string[]) => argv.map(quoteArgument).join(' ');

  paths.push({
    name: 'direct',
    label: 'direct',
    request: (upstream, mode) => ({
      port: upstreamPort(upstream),
      path: chatPath,
      headers: authorization,
      body: body(upstream, mode),
    }),
    pids: () => [],
    refresh: () => {},
    commandLine: `${upstreamUrl('fast')} and ${upstreamUrl('paced')}`,
  });

  const starting: Array<Promise<void>> = [];
  const configPath = path.join(options.workDir, 'gravity.yaml');
  await writeFile(configPath, gravityConfig(upstreamUrl('fast'), upstreamUrl('paced')));
  options.builds.forEach((build, index) => {
    const name = index === 0 ? 'gravity' : 'gravity-base';
    const profile =
      index === 0 && options.cpuProfileDir ? ['--cpu-prof', '--cpu-prof-dir', options.cpuProfileDir] : [];
    const argv = node([
      ...profile,
      ...build.entry,
      'serve',
      ...['--host', host, '--port', '0', '--config', configPath, '--log-level', 'warn'],
      ...['--data-dir', path.join(options.workDir, `data-${name}`)],
    ]);
    starting.push(
      children
        .start({
          name: `Gravity ${build.label}`,
          command: argv[0] as string,
          args: argv.slice(1),
          cwd: build.dir,
          env,
          readyPattern: /^gravity: listening on (\S+) models=/,
          startTimeoutMs,
        })
        .then((child) => {
          const port = Number(new URL(child.ready[1] as string).port);
          paths.push({
            name,
            label: `Gravity ${build.label}`,
            request: (upstream, mode) => ({
              port,
              path: chatPath,
              headers: authorization,
              body: body(upstream, mode),
            }),
            pids: () => [child.process.pid as number],
            refresh: () => {},
            commandLine: `(cd ${build.dir} && ${commandLine(argv)})`,
          });
        }),
    );
  });

  if (options.portkey) {
    const { args, cwd } = portkeyCommand();
    const argv = node(args);
    starting.push(
      children
        .start({
          name: 'Portkey',
          command: argv[0] as string,
          args: argv.slice(1),
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
          paths.push({
            name: 'portkey',
            label: 'Portkey',
            request: (upstream, mode) => ({
              port,
              path: chatPath,
              headers: {
                ...authorization,
                'x-portkey-provider': 'openai',
                'x-portkey-custom-host': upstreamUrl(upstream),
              },
              body: body(upstream, mode),
            }),
            pids: () => [child.process.pid as number],
            refresh: () => {},
            commandLine: `(cd ${cwd} && ${commandLine(argv)})`,
          });
        }),
    );
  }

  if (options.nginxBinary) {
    const binary = options.nginxBinary;
    // Outside the work dir (mode 0700): nginx's workers may run as another user and must reach theirs.
    const dir = await mkdtemp(path.join(os.tmpdir(), 'gravity-overhead-nginx-'));
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
        options.onNginx(nginx, dir);
        paths.push({
          name: 'nginx',
          label: 'nginx',
          // nginx maps /paced/… to the paced upstream; the same request line otherwise.
          request: (upstream, mode) => ({
            port: nginx.port,
            path: upstream === 'fast' ? chatPath : `/paced${chatPath}`,
            headers: authorization,
            body: body(upstream, mode),
          }),
          pids: () => nginx.pids(),
          refresh: () => nginx.refreshWorkers(),
          commandLine: commandLine([...proxyPrefix, binary, '-c', `${dir}/nginx.conf`, '-p', `${dir}/`]),
        });
      }),
    );
  }

  const results = await Promise.allSettled(starting);
  for (const result of results) if (result.status === 'rejected') throw result.reason;
  const order = ['direct', 'gravity', 'gravity-base', 'nginx', 'portkey'];
  paths.sort((a, b) => order.indexOf(a.name) - order.indexOf(b.name));
  return {
    upstreams,
    describe:
      `bench/support/fake-openai-upstream.ts, ${tokensPerResponse} tokens per response: fast (whole stream in ` +
      `one write) at ${upstreamUrl('fast')}, paced (${options.interTokenDelayMs} ms between tokens) at ${upstreamUrl('paced')}`,
  };
}
