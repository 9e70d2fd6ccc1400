// The peers Gravity is measured against: the Portkey gateway (an npm package in ./peers, installed on first
// use) and nginx (Debian's package) as a plain streaming reverse proxy. Both listen on 127.0.0.1 only.

import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcessGroup } from '../support/child-processes.js';
import { childPids } from '../support/process-stats.js';

const host = '127.0.0.1';
const installTimeoutMs = 300_000;

const peersDir = fileURLToPath(new URL('./peers/', import.meta.url));
const loopbackListen = fileURLToPath(new URL('./loopback-listen.mjs', import.meta.url));
const portkeyEntry = 'node_modules/@portkey-ai/gateway/build/start-server.js';

function installedVersion(name: string): string | null {
  try {
    const manifest = readFileSync(path.join(peersDir, 'node_modules', name, 'package.json'), 'utf8');
    return (JSON.parse(manifest) as { version: string }).version;
  } catch {
    return null;
  }
}

/** Installs ./peers (npm ci from the lockfile, npm install without one) unless the pinned Portkey is there. */
export function ensurePortkeyInstalled(): void {
  const manifest = JSON.parse(readFileSync(path.join(peersDir, 'package.json'), 'utf8')) as {
    dependencies: Record<string, string>;
  };
  const wanted = manifest.dependencies['@portkey-ai/gateway'];
  if (installedVersion('@portkey-ai/gateway') === wanted && existsSync(path.join(peersDir, portkeyEntry)))
    return;
  const hasLock = existsSync(path.join(peersDir, 'package-lock.json'));
  const args = [hasLock ? 'ci' : 'install', '--prefix', peersDir, '--no-audit', '--no-fund'];
  console.error(`installing the peer gateways: npm ${args.join(' ')}`);
  // npm's own output goes to stderr: stdout is the report.
  const result = spawnSync('npm', args, { stdio: ['ignore', 2, 2], timeout: installTimeoutMs });
  if (result.status !== 0)
    throw new Error(
      `npm ${args[0]} in ${peersDir} failed (${result.error?.message ?? `exit ${result.status}`})`,
    );
  if (installedVersion('@portkey-ai/gateway') !== wanted)
    throw new Error(`@portkey-ai/gateway ${wanted} is still not installed in ${peersDir}`);
}

/** Portkey's own start script, with every listen forced onto 127.0.0.1 (it has no listen-address option). */
export function portkeyCommand(): { args: string[]; cwd: string } {
  return {
    args: ['--import', loopbackListen, portkeyEntry, '--port=0', '--headless'],
    cwd: peersDir,
  };
}

const nginxInstallCommand = 'apt-get install -y nginx';

function onPath(command: string): string | null {
  const result = spawnSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' });
  const found = result.stdout.trim();
  return result.status === 0 && found ? found : null;
}

/** The nginx binary to use: `explicit` ('' for none), Debian's, one on PATH, or Debian's once installed. */
export function findOrInstallNginx(explicit: string): string | null {
  if (explicit) {
    if (!existsSync(explicit)) throw new Error(`--nginx: no such file '${explicit}'`);
    return explicit;
  }
  const found = () => (existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : onPath('nginx'));
  if (found()) return found();
  const why = installNginx();
  if (!found()) console.error(`nginx path skipped: ${why}`);
  return found();
}

/**
 * Installs Debian's nginx package, but only as root and only where the system's policy-rc.d forbids package
 * scripts to start services (exit 101, as in containers): elsewhere the package would start its default
 * site on port 80 of every interface. Returns why it did not install, or null once nginx is there.
 */
function installNginx(): string | null {
  if (process.getuid?.() !== 0) return `not root: run '${nginxInstallCommand}' as root, then rerun`;
  if (!onPath('apt-get')) return 'no apt-get on this machine';
  const policy = spawnSync('/usr/sbin/policy-rc.d', ['nginx', 'start'], { stdio: 'ignore' });
  if (policy.status !== 101)
    return (
      `installing it here would start a system nginx on port 80: run '${nginxInstallCommand}' yourself ` +
      '(and stop the service it starts), then rerun'
    );
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () =>
    spawnSync('apt-get', ['install', '-y', '-q', 'nginx'], {
      stdio: ['ignore', 2, 2],
      env,
      timeout: installTimeoutMs,
    });
  console.error(`nginx is missing: ${nginxInstallCommand}`);
  // A fresh machine may have no package lists yet.
  if (install().status !== 0) {
    spawnSync('apt-get', ['update', '-q'], { stdio: ['ignore', 2, 2], env, timeout: installTimeoutMs });
    if (install().status !== 0) return `'${nginxInstallCommand}' failed`;
  }
  return existsSync('/usr/sbin/nginx') ? null : `'${nginxInstallCommand}' did not install /usr/sbin/nginx`;
}

/** e.g. `nginx/1.22.1 (Debian package 1.22.1-9+deb12u11)` */
export function nginxVersion(binary: string): string {
  const result = spawnSync(binary, ['-v'], { encoding: 'utf8' });
  const version = (result.stderr.match(/nginx version: (\S+)/)?.[1] as string | undefined) ?? 'unknown';
  const owner = spawnSync('dpkg-query', ['-S', binary], { encoding: 'utf8' });
  const packageName = owner.status === 0 ? owner.stdout.split(':')[0]?.trim() : undefined;
  if (!packageName) return version;
  // dpkg's own field syntax, not a template.
  const versionFormat = '-f=$' + '{Version}';
  const query = spawnSync('dpkg-query', ['-W', versionFormat, packageName], { encoding: 'utf8' });
  return query.status === 0 ? `${version} (Debian package ${packageName} ${query.stdout.trim()})` : version;
}

/** A free port on 127.0.0.1 (for nginx, which cannot report the port it got for 0). */
function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function nginxConfig(dir: string, port: number, fastUpstreamPort: number, pacedUpstreamPort: number): string {
  // Keep-alive limits far above one run's request count, as Node servers have none: no reconnects mid-round.
  const upstream = (name: string, upstreamPort: number) => `  upstream ${name} {
    server ${host}:${upstreamPort};
    keepalive 128;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
  }`;
  return `daemon off;
master_process on;
worker_processes 1;
error_log stderr notice;
pid ${dir}/nginx.pid;

events {
  worker_connections 4096;
}

http {
  access_log off;
  client_body_temp_path ${dir}/client_body_temp;
  proxy_temp_path ${dir}/proxy_temp;
  fastcgi_temp_path ${dir}/fastcgi_temp;
  uwsgi_temp_path ${dir}/uwsgi_temp;
  scgi_temp_path ${dir}/scgi_temp;
  keepalive_timeout 300s;
  keepalive_requests 10000000;

${upstream('fake', fastUpstreamPort)}
${upstream('fake_paced', pacedUpstreamPort)}

  server {
    listen ${host}:${port};
    # Stream each upstream read straight to the client over reused upstream connections.
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_buffering off;

    location /paced/ {
      proxy_pass http://fake_paced/;
    }
    location / {
      proxy_pass http://fake;
    }
  }
}
`;
}

/** Whether `pid` is still an nginx process (and not an unrelated process that reused the id). */
function isNginx(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('nginx');
  } catch {
    return false;
  }
}

/**
 * Starts nginx in the foreground (`nginx -c <conf> -p <dir>`) as one of `children`, with everything it
 * writes inside `dir` and its log on stderr; ready once the master has started its worker (the master
 * opened the listening socket before that).
 */
export async function startNginx(
  children: ChildProcessGroup,
  options: {
    binary: string;
    dir: string;
    fastUpstreamPort: number;
    pacedUpstreamPort: number;
    /** e.g. ['taskset', '-c', '1']: a command prefix that pins the master and so its workers. */
    commandPrefix: string[];
  },
): Promise<{ port: number; argv: string[]; pids(): number[]; refreshWorkers(): void }> {
  const { dir } = options;
  mkdirSync(dir, { recursive: true });
  // Run as root, nginx's workers run as nobody: they must reach the temp folders nginx makes here.
  chmodSync(dir, 0o755);
  const port = await freeLoopbackPort();
  const configPath = path.join(dir, 'nginx.conf');
  writeFileSync(configPath, nginxConfig(dir, port, options.fastUpstreamPort, options.pacedUpstreamPort));
  // -e: where nginx logs before it has read the configuration (otherwise under /var/log).
  const argv = [...options.commandPrefix, options.binary, '-c', configPath, '-p', `${dir}/`, '-e', 'stderr'];
  const master = await children.start({
    name: 'nginx',
    command: argv[0] as string,
    args: argv.slice(1),
    cwd: dir,
    env: process.env,
    readyPattern: /start worker process (\d+)/,
    readyOnStderr: true,
    startTimeoutMs: 60_000,
  });
  const masterPid = master.process.pid as number;
  let workers = [Number(master.ready[1])];
  // The group stops the master with SIGTERM (the master waits for its workers), but SIGKILL to the master
  // alone, as on a crash, would leave its workers running and listening: kill them by pid too.
  process.on('exit', () => {
    for (const pid of workers) {
      try {
        if (isNginx(pid)) process.kill(pid, 'SIGKILL');
      } catch {}
    }
  });
  return {
    port,
    argv,
    pids: () => [masterPid, ...workers],
    refreshWorkers: () => {
      workers = childPids(masterPid);
    },
  };
}
