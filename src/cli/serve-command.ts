import type { Command } from 'commander';
import { loadConfig } from '../config/load-config.js';
import { ConfigError } from '../core/config-error.js';
import { StartupError } from '../core/startup-error.js';
import { type GravityServer, startGravityServer } from '../server/gravity-server.js';

function integerOption(value: string): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed)) throw new Error(`expected an integer, got '${value}'`);
  return parsed;
}

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description(
      'Serve the OpenAI-compatible API (embedded llama.cpp engine and generated models by default)',
    )
    .option('-c, --config <file>', 'YAML configuration file (env GRAVITY_CONFIG)')
    .option('--host <host>', 'address to listen on (env GRAVITY_HOST, default 127.0.0.1)')
    .option(
      '-p, --port <port>',
      'port to listen on, 0 for any free port (env GRAVITY_PORT, default 8080)',
      integerOption,
    )
    .option(
      '-m, --model <file.gguf>',
      'serve this GGUF model instead of the generated ones (env GRAVITY_MODEL)',
    )
    .option('--threads <n>', 'llama.cpp threads per engine (env GRAVITY_THREADS, default 1)', integerOption)
    .option(
      '--slots <n>',
      'concurrent sequences per llama.cpp engine (env GRAVITY_SLOTS, default 4)',
      integerOption,
    )
    .option(
      '--context <tokens>',
      'context window per slot (env GRAVITY_CONTEXT_TOKENS, default 4096)',
      integerOption,
    )
    .option(
      '--emulate <fleet>',
      'serve an emulated fleet instead: <hardware>:<model>:<replicas>[x<devices>], e.g. h100:llama-3.1-8b:4 (env GRAVITY_EMULATE)',
    )
    .option('--data-dir <dir>', 'where generated models live (env GRAVITY_DATA_DIR, default .gravity)')
    .option(
      '--ext-proc-port <port>',
      "serve the Endpoint Picker (Envoy ext_proc) on this port; the config file's epp section names the endpoints",
      integerOption,
    )
    .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent (env GRAVITY_LOG_LEVEL)')
    .action(async (options) => {
      let config: ReturnType<typeof loadConfig>;
      try {
        config = loadConfig({
          configPath: options.config,
          host: options.host,
          port: options.port,
          modelPath: options.model,
          emulate: options.emulate,
          threads: options.threads,
          slots: options.slots,
          contextTokens: options.context,
          logLevel: options.logLevel,
          dataDir: options.dataDir,
          extProcPort: options.extProcPort,
        });
      } catch (error) {
        if (error instanceof ConfigError) {
          process.stderr.write(`gravity: ${error.message}\n`);
          process.exit(2);
        }
        throw error;
      }
      let server: GravityServer;
      try {
        server = await startGravityServer(config);
      } catch (error) {
        // Problems only found when engines are created (e.g. a model that does not fit its emulated GPUs).
        if (error instanceof ConfigError) {
          process.stderr.write(`gravity: ${error.message}\n`);
          process.exit(2);
        }
        // Something the server needs is missing (an unreachable PostgreSQL ledger): said, not a stack.
        if (error instanceof StartupError) {
          process.stderr.write(`gravity: ${error.message}\n`);
          process.exit(1);
        }
        throw error;
      }
      const models = server.gateway.models().map((model) => model.id);
      server.http.log.info({ url: server.url, models }, `Gravity listening on ${server.url}`);
      logReplicaDescriptions(server);
      // Machine-readable line for scripts and tests that start Gravity on port 0.
      process.stdout.write(`gravity: listening on ${server.url} models=${models.join(',')}\n`);
      if (server.eppAddress) process.stdout.write(`gravity: ext_proc listening on ${server.eppAddress}\n`);
      let signals = 0;
      const stop = (signal: string) => {
        signals++;
        if (signals > 1) process.exit(130); // A second signal means "now".
        server.http.log.info({ signal }, 'shutting down: draining in-flight requests');
        server.close().then(
          () => process.exit(0),
          (error) => {
            server.http.log.error({ err: error }, 'shutdown failed');
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
    });
}

/**
 * Says at start what answers, for engines that describe their replicas (extensions.description: an
 * emulated replica's modelled hardware and limits), one line per distinct shape so a reader knows what
 * a fleet of identical replicas is.
 */
function logReplicaDescriptions(server: GravityServer): void {
  const shapes = new Map<string, { type: string; what: string; engineIds: string[] }>();
  for (const engine of server.gateway.engines) {
    const description = engine.extensions?.description;
    if (description === undefined) continue;
    const what = `${engine.models()[0]?.id ?? engine.id} = ${description}`;
    const key = `${engine.type} ${what}`;
    const shape = shapes.get(key) ?? { type: engine.type, what, engineIds: [] };
    shape.engineIds.push(engine.id);
    shapes.set(key, shape);
  }
  for (const { type, what, engineIds } of shapes.values()) {
    const replicas = `${engineIds.length} ${type} replica${engineIds.length === 1 ? '' : 's'}`;
    server.http.log.info({ engines: engineIds }, `${replicas} of ${what}`);
  }
}
