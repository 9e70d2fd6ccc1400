import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import OpenAI, { APIError } from 'openai';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqliteKeyStore } from '../src/admission/sqlite-key-store.js';
import { createKey } from '../src/cli/keys-command.js';
import { type Harness, startHarness } from './support/gravity-harness.js';
import { spawnGravity } from './support/gravity-process.js';

/**
 * The dashboard in a real browser: Debian's chromium driven by playwright-core (never a downloaded
 * browser), against a live Gravity on loopback with emulated replicas and API keys. Screenshots land in
 * test-artifacts/ (git-ignored) for a person to look at.
 */
const repositoryRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const artifacts = path.join(repositoryRoot, 'test-artifacts');
const chromiumPath = '/usr/bin/chromium';
const chromiumArgs = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const replica = {
  type: 'emulated',
  hardware: 'h200',
  model: 'llama-3.1-8b',
  weightDtype: 'fp8',
  contextTokens: 2048,
  // Two requests at a time per replica: a burst of a dozen queues in the gateway.
  maxNumSeqs: 2,
  metering: { cost: { hourlyUsd: 3.5 } },
};

/** A small rate sweep on two tiers, and a plan over two GPU types: runs in about a second each. */
const sweepScenario = `name: dashboard-sweep
seed: 3
fleet: { hardware: a100-80gb, replicas: 1, model: llama-3.1-8b, maxNumSeqs: 32 }
workload:
  arrivals: { process: poisson, ratePerSecond: 10 }
  requests: 400
  mix:
    - { name: interactive, weight: 1, tenant: acme, tier: priority, input: { fixed: 300 }, output: { fixed: 100 } }
    - { name: background, weight: 2, tenant: initech, tier: flex, input: { fixed: 1000 }, output: { fixed: 200 } }
scheduling: { mode: slo }
slo:
  priority: { ttftMs: 500, tpotMs: 60 }
  flex: { ttftMs: 10000, tpotMs: 200 }
sweep:
  ratePerSecond: [5, 10, 20]
plan: { hardware: [a100-80gb, h100-sxm], maxReplicas: 4 }
`;

/** Runs `gravity <args>` as a process and fails the test with its stderr when it exits non-zero. */
async function gravityCommand(args: string[]): Promise<void> {
  const run = spawnGravity(args);
  const { code } = await run.exited;
  if (code !== 0) throw new Error(`gravity ${args.join(' ')} exited ${code}: ${run.stderr()}`);
}

let harness: Harness;
/** What `gravity sim --json/--html` and `gravity plan --json` wrote for `sweepScenario`. */
let simulatorOutput: { directory: string; simJson: string; simHtml: string; planJson: string };
let adminKey: string;
let acmeKey: string;
let globexKey: string;
let browser: BrowserContext;
let userDataDir: string;

beforeAll(async () => {
  // The page as `npm run build` makes it, from the sources under test.
  execFileSync(process.execPath, ['scripts/build-dashboard.mjs'], { cwd: repositoryRoot });
  mkdirSync(artifacts, { recursive: true });
  harness = await startHarness(
    (config) => {
      const store = new SqliteKeyStore(config.auth.keysPath ?? '');
      adminKey = createKey(store, { tenant: 'ops', admin: true }).key;
      acmeKey = createKey(store, { tenant: 'acme', tiers: 'priority,default,flex' }).key;
      globexKey = createKey(store, { tenant: 'globex' }).key;
      store.close();
    },
    {
      metering: { intervalMs: 50 },
      tiers: { flex: { ttftMs: 1 } },
      engines: { 'emulated-0': replica, 'emulated-1': replica },
      models: { 'llama-3.1-8b': { engines: ['emulated-0', 'emulated-1'] } },
    },
  );
  const directory = mkdtempSync(path.join(tmpdir(), 'gravity-sim-output-'));
  simulatorOutput = {
    directory,
    simJson: path.join(directory, 'sweep.json'),
    simHtml: path.join(directory, 'sweep.html'),
    planJson: path.join(directory, 'plan.json'),
  };
  const scenario = path.join(directory, 'sweep.yaml');
  writeFileSync(scenario, sweepScenario);
  await Promise.all([
    gravityCommand(['sim', scenario, '--json', simulatorOutput.simJson, '--html', simulatorOutput.simHtml]),
    gravityCommand(['plan', scenario, '--json', simulatorOutput.planJson, '--quiet']),
  ]);
  userDataDir = mkdtempSync(path.join(tmpdir(), 'gravity-chromium-'));
  browser = await chromium.launchPersistentContext(userDataDir, {
    executablePath: chromiumPath,
    headless: true,
    args: chromiumArgs,
    viewport: { width: 1280, height: 800 },
  });
});

afterAll(async () => {
  await browser?.close();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
  if (simulatorOutput) rmSync(simulatorOutput.directory, { recursive: true, force: true });
  await harness?.close();
});

function clientFor(key: string): OpenAI {
  return new OpenAI({ baseURL: `${harness.url}/v1`, apiKey: key, maxRetries: 0, timeout: 30_000 });
}

type Tier = 'priority' | 'default' | 'flex';

/**
 * Three short waves a few seconds apart, so the live charts have more than one bucket to draw, then a
 * burst of long requests that fills the replicas' two slots each: requests wait in the gateway's queue,
 * and flex requests that arrive behind them are shed (their TTFT target is 1 ms here: any wait misses it).
 */
async function sendTraffic(): Promise<{ sent: number; shed: number }> {
  const totals = { sent: 0, shed: 0 };
  const add = (wave: { sent: number; shed: number }) => {
    totals.sent += wave.sent;
    totals.shed += wave.shed;
  };
  const shortWave = [
    { key: acmeKey, tier: 'priority' as const, count: 4 },
    { key: acmeKey, tier: 'default' as const, count: 4 },
    { key: globexKey, tier: 'default' as const, count: 5 },
  ];
  for (let wave = 0; wave < 3; wave++) {
    if (wave > 0) await new Promise((resolve) => setTimeout(resolve, 2_500));
    add(await sendWave(shortWave, 24));
  }
  const queued = sendWave(
    [
      { key: acmeKey, tier: 'priority', count: 4 },
      { key: globexKey, tier: 'default', count: 12 },
    ],
    256,
  );
  await waitForQueue();
  add(await sendWave([{ key: acmeKey, tier: 'flex', count: 4 }], 24));
  add(await queued);
  return totals;
}

/** Until the snapshot shows a request waiting for a slot (the burst has filled the replicas). */
async function waitForQueue(): Promise<void> {
  for (;;) {
    const response = await fetch(`${harness.url}/v1/dashboard/snapshot?after=0`, {
      headers: { authorization: `Bearer ${adminKey}` },
    });
    const snapshot = (await response.json()) as { queues: { waiting: number }[] };
    if (snapshot.queues.some((queue) => queue.waiting > 0)) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Streams every request to its end; a request refused for load (429, 503) counts as shed. */
async function sendWave(
  plan: { key: string; tier: Tier; count: number }[],
  maxTokens: number,
): Promise<{ sent: number; shed: number }> {
  let shed = 0;
  const requests = plan.flatMap(({ key, tier, count }) =>
    Array.from({ length: count }, async (_, index) => {
      try {
        const stream = await clientFor(key).chat.completions.create({
          model: 'llama-3.1-8b',
          messages: [{ role: 'user', content: `Say something about tier ${tier}, number ${index}.` }],
          max_tokens: maxTokens,
          stream: true,
          service_tier: tier as 'default',
        });
        for await (const _chunk of stream) {
          // Read to the end: the request is metered when its stream finishes.
        }
      } catch (error) {
        if (error instanceof APIError && (error.status === 429 || error.status === 503)) shed++;
        else throw error;
      }
    }),
  );
  await Promise.all(requests);
  return { sent: requests.length, shed };
}

/** A page that records what the console and uncaught exceptions say. */
async function openPage(options: { key?: string } = {}): Promise<{ page: Page; problems: string[] }> {
  const page = await browser.newPage();
  const problems: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error' || message.type() === 'warning') problems.push(message.text());
  });
  page.on('pageerror', (error) => problems.push(error.message));
  if (options.key) {
    const key = options.key;
    await page.addInitScript({
      content: `sessionStorage.setItem('gravity.adminKey', ${JSON.stringify(key)})`,
    });
  }
  return { page, problems };
}

/*
 * Scripts run in the page. Strings, not functions: this project's TypeScript has no DOM types (it runs on
 * Node), and the page's own code is typed with them in src/dashboard/client.
 */

interface ShownHistory {
  start: string;
  end: string;
  figures: Record<string, string>;
  rows: Record<string, string>[];
}

/** The history section's range and every figure it shows (the `/v1/usage` value each cell keeps). */
const readHistory = `(() => {
  const history = document.getElementById('history');
  const valuesOf = (root) =>
    Object.fromEntries([...root.querySelectorAll('[data-figure]')].map((cell) => [cell.dataset.figure, cell.dataset.value]));
  return {
    start: history.dataset.startTime,
    end: history.dataset.endTime,
    figures: valuesOf(history.querySelector('.totals')),
    rows: [...history.querySelectorAll('.by-tenant-model tbody tr')].map((row) => ({
      tenant: row.dataset.tenant,
      model: row.dataset.model,
      ...valuesOf(row),
    })),
  };
})()`;

/** How many pixels of each canvas on the page have been painted (alpha above zero). */
const paintedPixelsPerCanvas = `[...document.querySelectorAll('canvas')].map((canvas) => {
  const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
  let count = 0;
  for (let index = 3; index < data.length; index += 4) if (data[index] > 0) count++;
  return count;
})`;

async function points(page: Page, chartId: string): Promise<number> {
  return Number(await page.getAttribute(`#${chartId}`, 'data-points'));
}

describe('GET /dashboard', () => {
  it('serves the page to anyone, and its live figures only to an admin key', async () => {
    const page = await fetch(`${harness.url}/dashboard`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(await page.text()).toContain('/dashboard/assets/dashboard.js');
    const script = await fetch(`${harness.url}/dashboard/assets/dashboard.js`);
    expect(script.status).toBe(200);
    expect(script.headers.get('content-type')).toContain('javascript');
    expect((await fetch(`${harness.url}/dashboard/assets/index.html`)).status).toBe(404);

    const snapshot = `${harness.url}/v1/dashboard/snapshot`;
    expect((await fetch(snapshot)).status).toBe(401);
    const tenant = await fetch(snapshot, { headers: { authorization: `Bearer ${acmeKey}` } });
    expect(tenant.status).toBe(403);
    expect(((await tenant.json()) as { error: { message: string } }).error.message).toMatch(/admin/);
    const admin = await fetch(`${snapshot}?after=0`, { headers: { authorization: `Bearer ${adminKey}` } });
    expect(admin.status).toBe(200);
    const body = (await admin.json()) as { tiers: { tier: string; ttft_target_ms: number }[] };
    expect(body.tiers.find((tier) => tier.tier === 'priority')?.ttft_target_ms).toBe(500);
    const invalid = await fetch(`${snapshot}?after=-1`, { headers: { authorization: `Bearer ${adminKey}` } });
    expect(invalid.status).toBe(400);
  });
});

describe('the dashboard in chromium', () => {
  it('says what to do before any traffic, then charts it with figures equal to /v1/usage', async () => {
    const { page, problems } = await openPage({ key: adminKey });
    await page.goto(`${harness.url}/dashboard`);
    await page.waitForSelector('body[data-ready=true]');
    await expect.poll(() => page.textContent('.live-empty')).toContain('No traffic yet — try');
    expect(await page.textContent('.live-empty')).toContain(`curl ${harness.url}/v1/chat/completions`);
    expect(await page.textContent('.live-empty')).toContain('llama-3.1-8b');
    expect(await page.textContent('#history .totals')).toContain('No requests in this range');
    await page.screenshot({ path: path.join(artifacts, 'dashboard-empty-1280x800.png') });

    const traffic = await sendTraffic();
    expect(traffic.shed).toBeGreaterThan(0);
    let sent = traffic.sent;
    // Every request reaches the page within a poll or two.
    await expect
      .poll(() => page.getAttribute('#live', 'data-requests'), { timeout: 10_000 })
      .toBe(String(sent));
    for (const chart of ['chart-throughput', 'chart-ttft', 'chart-itl'])
      await expect.poll(() => points(page, chart), { timeout: 10_000 }).toBeGreaterThan(0);
    expect(await page.locator('#live .live-empty .empty').count()).toBe(0);
    // The burst queued (seen by the page's polls while it lasted) and flex requests were shed.
    expect(Number(await page.getAttribute('#chart-queue', 'data-highest'))).toBeGreaterThan(0);
    expect(Number(await page.getAttribute('#chart-shed', 'data-highest'))).toBeGreaterThan(0);
    // uPlot draws on canvases, one per chart, each with its legend naming the series.
    expect(await page.locator('#live figure.chart canvas').count()).toBe(5);
    const ttftLegend = await page.textContent('#chart-ttft');
    for (const label of ['priority p95', 'default p50', 'flex target']) expect(ttftLegend).toContain(label);
    expect(ttftLegend).not.toContain('off scale');
    expect(await page.getAttribute('#chart-ttft', 'aria-label')).toContain('ms (log scale)');
    expect(await page.locator('.replicas tbody tr').count()).toBe(2);
    expect(await page.textContent('.replicas tbody')).toContain('healthy');
    // The newest 30, newest first.
    await expect.poll(() => page.locator('.recent tbody tr').count()).toBe(Math.min(sent, 30));
    // Each request's route opens to routing's explanation (keyboard: Tab to it, Enter), and stays open,
    // with the focus on it, when the next poll brings new requests.
    const firstRow = page.locator('.recent tbody tr').first();
    const opened = await firstRow.getAttribute('data-request-id');
    await firstRow.locator('td.route summary').focus();
    await page.keyboard.press('Enter');
    expect(await firstRow.locator('td.route pre').textContent()).toContain('"profile"');
    await clientFor(acmeKey).chat.completions.create({
      model: 'llama-3.1-8b',
      messages: [{ role: 'user', content: 'One more.' }],
      max_tokens: 4,
    });
    sent += 1;
    await expect
      .poll(() => page.getAttribute('#live', 'data-requests'), { timeout: 10_000 })
      .toBe(String(sent));
    expect(await page.locator(`.recent tr[data-request-id="${opened}"] details[open]`).count()).toBe(1);
    expect(
      await page.evaluate<string>("document.activeElement?.closest('tr')?.dataset.requestId ?? ''"),
    ).toBe(opened);
    expect(await page.textContent('#live-energy-per-million')).toMatch(/estimated|measured/);

    // History: choosing a range reloads it from the ledger; the figures shown are /v1/usage's.
    await page.selectOption('#range', '900');
    await expect
      .poll(() => page.getAttribute('#history [data-figure=requests]', 'data-value'), { timeout: 10_000 })
      .toBe(String(sent));
    const shown = await page.evaluate<ShownHistory>(readHistory);
    const usage = async (groupBy?: string) => {
      const query = `start_time=${shown.start}&end_time=${shown.end}${groupBy ? `&group_by=${groupBy}` : ''}`;
      const response = await fetch(`${harness.url}/v1/usage?${query}`, {
        headers: { authorization: `Bearer ${adminKey}` },
      });
      return ((await response.json()) as { data: Record<string, unknown>[] }).data;
    };
    const [total] = await usage();
    for (const name of [
      'requests',
      'failed_requests',
      'prompt_tokens',
      'completion_tokens',
      'price_usd',
      'cost_usd',
      'margin_usd',
      'energy_joules',
    ])
      expect(shown.figures[name], name).toBe(String(total?.[name]));
    expect(shown.figures.failed_requests).toBe(String(traffic.shed));
    expect(shown.figures.energy_sources).toBe(((total?.energy_sources ?? []) as string[]).join(','));
    const byTenantModel = await usage('tenant,model');
    expect(shown.rows.map((row) => row.tenant).sort()).toEqual(['acme', 'globex']);
    for (const row of shown.rows) {
      const group = byTenantModel.find((item) => item.tenant === row.tenant && item.model === row.model);
      for (const name of ['requests', 'price_usd', 'cost_usd', 'margin_usd'] as const)
        expect(row[name], `${row.tenant} ${name}`).toBe(String(group?.[name]));
    }
    expect(Number(shown.figures.price_usd)).toBeGreaterThan(0);
    await expect.poll(() => points(page, 'chart-history-requests'), { timeout: 10_000 }).toBeGreaterThan(0);

    // A range typed in (UTC): before the traffic, nothing; around it, everything.
    const utc = (seconds: number) => new Date(seconds * 1000).toISOString().slice(0, 19);
    const trafficStart = Number(shown.start) + 1;
    await page.selectOption('#range', 'custom');
    await page.fill('#range-from', utc(trafficStart - 7200));
    await page.fill('#range-to', utc(trafficStart - 3600));
    await expect.poll(() => page.getAttribute('#history', 'data-end-time')).toBe(String(trafficStart - 3600));
    expect(await page.textContent('#history .totals')).toContain('No requests in this range');
    await page.fill('#range-to', utc(Number(shown.end) + 60));
    await expect
      .poll(() => page.getAttribute('#history', 'data-end-time'))
      .toBe(String(Number(shown.end) + 60));
    expect(await page.getAttribute('#history [data-figure=requests]', 'data-value')).toBe(String(sent));
    await page.selectOption('#range', '900');

    await page.evaluate('window.scrollTo(0, 0)');
    await page.screenshot({ path: path.join(artifacts, 'dashboard-1280x800.png') });
    await page.screenshot({ path: path.join(artifacts, 'dashboard-1280-full.png'), fullPage: true });
    // A phone: one column, no sideways scrolling of the page (wide tables scroll in their own box).
    await page.setViewportSize({ width: 420, height: 900 });
    await expect
      .poll(() => page.evaluate<number>('document.documentElement.scrollWidth'))
      .toBeLessThanOrEqual(420);
    await page.evaluate('window.scrollTo(0, 0)');
    await page.screenshot({ path: path.join(artifacts, 'dashboard-420x900.png') });
    await page.screenshot({ path: path.join(artifacts, 'dashboard-420-full.png'), fullPage: true });
    expect(problems).toEqual([]);
    await page.close();
  });

  it('is reachable from the keyboard, and opens a simulation file with the same charts', async () => {
    const { page, problems } = await openPage({ key: adminKey });
    await page.goto(`${harness.url}/dashboard`);
    await page.waitForSelector('body[data-ready=true]');
    const reached = new Set<string>();
    for (let step = 0; step < 80 && !reached.has('range'); step++) {
      await page.keyboard.press('Tab');
      reached.add(
        await page.evaluate<string>(
          "document.activeElement?.id || document.activeElement?.textContent || ''",
        ),
      );
    }
    expect(reached).toContain('Simulation file');
    expect(reached).toContain('range');
    await page.focus('[data-view=simulation]');
    await page.keyboard.press('Enter');
    expect(await page.isVisible('#view-simulation')).toBe(true);
    expect(await page.textContent('#simulation .sim-message')).toContain('No file opened — write one with');

    await page.setInputFiles('#sim-file', simulatorOutput.simJson);
    for (const chart of ['chart-sim-throughput', 'chart-sim-ttft', 'chart-sim-itl', 'chart-sim-rejected'])
      await expect.poll(() => points(page, chart)).toBeGreaterThan(0);
    expect(await page.locator('#simulation .sim-fleet tbody tr').count()).toBe(3);
    expect(await page.getAttribute('#chart-sim-ttft', 'aria-label')).toContain('offered load (requests / s)');
    const legend = await page.textContent('#chart-sim-ttft');
    for (const label of ['priority p95', 'flex p50', 'priority target']) expect(legend).toContain(label);
    await page.screenshot({ path: path.join(artifacts, 'dashboard-simulation-1280x800.png') });

    // A capacity plan: every probe of every candidate is a run.
    const plan = JSON.parse(readFileSync(simulatorOutput.planJson, 'utf8')) as {
      plan: { feasible: { probes: unknown[] }[]; infeasible: { probes: unknown[] }[] };
    };
    const probes = [...plan.plan.feasible, ...plan.plan.infeasible].reduce(
      (count, outcome) => count + outcome.probes.length,
      0,
    );
    await page.setInputFiles('#sim-file', simulatorOutput.planJson);
    await expect
      .poll(() => page.textContent('#simulation .sim-message'))
      .toContain(`plan.json: ${probes} run`);
    expect(await page.locator('#simulation .sim-fleet tbody tr').count()).toBe(probes);
    expect(await points(page, 'chart-sim-ttft')).toBeGreaterThan(0);
    expect(problems).toEqual([]);
    await page.close();
  });

  it('asks for an admin key when keys exist, and refuses a tenant key', async () => {
    const { page, problems } = await openPage();
    await page.goto(`${harness.url}/dashboard`);
    await page.waitForSelector('#key-form:not([hidden])');
    await page.fill('#key-input', acmeKey);
    await page.keyboard.press('Enter');
    await expect.poll(() => page.textContent('#key-problem')).toContain('not an admin key');
    await page.fill('#key-input', adminKey);
    await page.keyboard.press('Enter');
    await page.waitForSelector('body[data-ready=true]');
    expect(await page.isHidden('#key-form')).toBe(true);
    // The browser reports the refused requests themselves; nothing else may go wrong.
    expect(problems.filter((text) => !/status of 40[13]/.test(text))).toEqual([]);
    await page.close();
  });
});

describe("the simulator's HTML report in chromium", () => {
  it('opens from file:// and draws its charts without console errors', async () => {
    const { page, problems } = await openPage();
    await page.goto(pathToFileURL(simulatorOutput.simHtml).href);
    const canvases = page.locator('canvas');
    await expect.poll(() => canvases.count()).toBeGreaterThanOrEqual(6);
    // Drawn, not blank: every canvas has painted pixels.
    const painted = await page.evaluate<number[]>(paintedPixelsPerCanvas);
    for (const pixels of painted) expect(pixels).toBeGreaterThan(1000);
    await page.screenshot({ path: path.join(artifacts, 'simulator-report-1280x800.png'), fullPage: true });
    expect(problems).toEqual([]);
    await page.close();
  });
});
