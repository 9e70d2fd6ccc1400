import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteKeyStore } from '../src/admission/sqlite-key-store.js';
import { createKey } from '../src/cli/keys-command.js';
import { loadConfig } from '../src/config/load-config.js';
import { type Harness, startHarness } from './support/gravity-harness.js';

/**
 * What a live Gravity exports on /metrics, against docs/metrics.md and against Prometheus' own linter
 * (`promtool check metrics`, from Debian's prometheus package: scripts/ensure-test-services.sh installs
 * it). One emulated replica with metering and prices, so the money and energy counters have samples, and
 * three tenants' keys against `metrics.maxTenantLabels: 2`.
 */
const model = 'llama-3.1-8b';
const tenants = ['tenant-a', 'tenant-b', 'tenant-c'];
const keys = new Map<string, string>();
let harness: Harness;

beforeAll(async () => {
  harness = await startHarness(
    (config) => {
      const store = new SqliteKeyStore(config.auth.keysPath ?? '');
      try {
        for (const tenant of tenants) keys.set(tenant, createKey(store, { tenant }).key);
      } finally {
        store.close();
      }
    },
    {
      metering: { intervalMs: 20 },
      metrics: { maxTenantLabels: 2 },
      pricing: { models: { [model]: { inputPerMillionUsd: 1, outputPerMillionUsd: 2 } } },
      engines: {
        replica: {
          type: 'emulated',
          hardware: 'h200',
          model,
          weightDtype: 'fp8',
          contextTokens: 2048,
          metering: { cost: { hourlyUsd: 3.5 } },
        },
      },
      models: { [model]: { engine: 'replica' } },
    },
  );
  // In order, so that first appearance is tenant-a, then tenant-b; tenant-c is the one past the bound.
  for (const tenant of tenants) {
    const client = new OpenAI({ baseURL: `${harness.url}/v1`, apiKey: keys.get(tenant), maxRetries: 0 });
    const stream = await client.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'Count to five.' }],
      max_tokens: 6,
      stream: true,
    });
    for await (const _chunk of stream);
  }
  // A keyless request, so that the auth failure counter has a sample too.
  expect((await fetch(`${harness.url}/v1/models`)).status).toBe(401);
});
afterAll(async () => {
  await harness?.close();
});

async function scrape(): Promise<string> {
  const response = await fetch(`${harness.url}/metrics`);
  expect(response.status).toBe(200);
  return response.text();
}

/** Family name → type, from the `# TYPE` lines: every registered family has one, samples or not. */
function exportedFamilies(exposition: string): Map<string, string> {
  const families = new Map<string, string>();
  for (const match of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm))
    families.set(match[1] ?? '', match[2] ?? '');
  return families;
}

/** Metric name → type, from the first two columns of docs/metrics.md's tables. */
function documentedFamilies(): Map<string, string> {
  const markdown = readFileSync(new URL('../docs/metrics.md', import.meta.url), 'utf8');
  const families = new Map<string, string>();
  for (const match of markdown.matchAll(/^\| `(gravity_[a-z_]+)` +\| (\w+) +\|/gm)) {
    families.set(match[1] ?? '', match[2] ?? '');
  }
  return families;
}

/**
 * Families registered only with some configuration, and that configuration. Documented all the same; the
 * test checks they are documented, not that they are exported here.
 */
const conditionalFamilies = new Map([
  ['gravity_shared_state_unavailable_total', 'state.store: redis (test/shared-state.test.ts scrapes it)'],
]);

function sampleLines(exposition: string, family: string): string[] {
  return exposition
    .split('\n')
    .filter((line) => line.startsWith(`${family}{`) || line.startsWith(`${family} `));
}

describe('/metrics against docs/metrics.md', () => {
  it('exports exactly the gravity_* families the docs list, with the documented types', async () => {
    const exported = new Map(
      [...exportedFamilies(await scrape())].filter(([name]) => name.startsWith('gravity_')),
    );
    const documented = documentedFamilies();
    for (const name of conditionalFamilies.keys()) {
      expect(documented.has(name), `${name} is documented`).toBe(true);
      documented.delete(name);
    }
    expect([...exported.keys()].sort()).toEqual([...documented.keys()].sort());
    expect(Object.fromEntries(exported)).toEqual(Object.fromEntries(documented));
  });

  it('has samples for the money, energy, queue-wait and overhead families once traffic has run', async () => {
    // Money and energy are attributed when the metering service closes a request; poll briefly for it.
    const deadline = Date.now() + 10_000;
    let exposition = await scrape();
    while (sampleLines(exposition, 'gravity_carbon_grams_total').length === 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      exposition = await scrape();
    }
    for (const family of [
      'gravity_energy_joules_total',
      'gravity_cost_usd_total',
      'gravity_price_usd_total',
      'gravity_carbon_grams_total',
      'gravity_queue_wait_seconds_count',
      'gravity_gateway_overhead_seconds_count',
      'gravity_auth_failures_total',
    ]) {
      expect(sampleLines(exposition, family), family).not.toEqual([]);
    }
    const price = sampleLines(exposition, 'gravity_price_usd_total');
    expect(price.every((line) => Number(line.split(' ').at(-1)) > 0)).toBe(true);
    expect(sampleLines(exposition, 'gravity_energy_joules_total')[0]).toMatch(
      /source="estimated:performance-model"/,
    );
  });
});

describe('/metrics tenant label', () => {
  it('is bounded by default: 100 tenants named, the rest (other)', () => {
    expect(loadConfig({}, {}).metrics.maxTenantLabels).toBe(100);
  });

  it('names the first maxTenantLabels tenants and counts later ones as (other)', async () => {
    const exposition = await scrape();
    for (const family of [
      'gravity_prompt_tokens_total',
      'gravity_completion_tokens_total',
      'gravity_price_usd_total',
    ]) {
      const tenantsShown = sampleLines(exposition, family).map((line) => /tenant="([^"]*)"/.exec(line)?.[1]);
      expect(tenantsShown.sort(), family).toEqual(['(other)', 'tenant-a', 'tenant-b']);
    }
  });
});

describe('promtool check metrics', () => {
  it("finds nothing in Gravity's own exposition", async () => {
    const checked = spawnSync('promtool', ['check', 'metrics'], { input: await scrape(), encoding: 'utf8' });
    expect(checked.error, 'promtool runs (Debian package prometheus)').toBeUndefined();
    const findings = `${checked.stdout}${checked.stderr}`
      .split('\n')
      .filter((line) => line.trim() !== '')
      // The emulated engine's vLLM-named families (docs/metrics.md) keep vLLM's spelling on purpose, so
      // that scrapers written for vLLM read them unchanged; promtool reserves colons for recording rules.
      .filter((line) => !/^vllm:[a-z_]+ metric names should not contain ':'$/.test(line));
    expect(findings).toEqual([]);
  });
});
