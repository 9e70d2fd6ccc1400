import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import type { GravityConfig } from '../../src/config/config-schema.js';
import { loadConfig } from '../../src/config/load-config.js';
import { type GravityServer, startGravityServer } from '../../src/server/gravity-server.js';

/** Generated models are cached per test process in one temp folder; every file builds its own copies. */
const dataDir = mkdtempSync(path.join(tmpdir(), 'gravity-test-'));

export interface Harness {
  server: GravityServer;
  ledgerPath: string;
  /** This server's own key store (empty: the server is open), for `createKey` and `revokeKey`. */
  keysPath: string;
  client: OpenAI;
  url: string;
  close(): Promise<void>;
}

/**
 * A live Gravity on an ephemeral loopback port, configured like `gravity serve`, plus an `openai` SDK
 * client pointed at it. `document` is a configuration as YAML would give it (defaults apply);
 * `configure` edits the validated result (slots, limits…).
 */
export async function startHarness(
  configure: (config: GravityConfig) => void = () => {},
  document?: Record<string, unknown>,
  serverOptions: Parameters<typeof startGravityServer>[1] = {},
): Promise<Harness> {
  const config = loadConfig({ document, port: 0, host: '127.0.0.1', dataDir, logLevel: 'silent' }, {});
  // Each server gets its own ledger, key store and batch store; the generated models are shared.
  const serverDir = mkdtempSync(path.join(tmpdir(), 'gravity-ledger-'));
  config.metering.ledgerPath = path.join(serverDir, 'ledger.sqlite');
  config.batch.directory = serverDir;
  config.responses.directory = serverDir;
  const keysPath = path.join(serverDir, 'keys.sqlite');
  config.auth.keysPath = keysPath;
  configure(config);
  const server = await startGravityServer(config, serverOptions);
  const client = new OpenAI({
    baseURL: `${server.url}/v1`,
    apiKey: 'unused',
    maxRetries: 0,
    timeout: 30_000,
  });
  return {
    server,
    client,
    url: server.url,
    ledgerPath: config.metering.ledgerPath,
    keysPath: config.auth.keysPath ?? keysPath,
    close: () => server.close(),
  };
}

/** POSTs raw bytes, for the error cases the SDK would refuse to send. */
export async function postRaw(url: string, body: string, headers: Record<string, string> = {}) {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
  });
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return {
    status: response.status,
    headers: response.headers,
    text,
    json: json as { error?: Record<string, unknown> },
  };
}
