import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { connectRedis } from '../src/admission/redis-connection.js';
import { openSharedKeyStore } from '../src/admission/shared-state.js';
import { createKey } from '../src/cli/keys-command.js';
import { systemClock } from '../src/core/clock.js';
import { defaults } from '../src/core/defaults.js';
import { type FleetAttempt, FleetCore, fleetRequest } from '../src/fleet/fleet-core.js';
import { SharedFleetState } from '../src/gateway/shared-fleet-state.js';
import { routingConfigSchema } from '../src/routing/routing-config.js';
import { schedulerSettings } from '../src/scheduling/scheduler-settings.js';
import { schedulingSettingsShape } from '../src/scheduling/scheduling-config.js';
import { type Harness, startHarness } from './support/gravity-harness.js';
import { type RedisServer, startRedis } from './support/redis-server.js';
import { listenOnLoopback } from './support/replay-upstream.js';

/**
 * Two Gravity servers sharing one Redis (`state.store: redis`) in front of the same upstream engines, as
 * two gateway replicas behind a load balancer: each one's fairness counters (VTC) count what the other
 * served, and a replica one ejects is avoided by the other without failing requests of its own.
 */
const base = { id: 'chatcmpl-fleet', object: 'chat.completion.chunk', created: 1, model: 'upstream' };
const chunk = (delta: Record<string, unknown>, finishReason: string | null = null) =>
  `data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta, finish_reason: finishReason }] })}\n\n`;
const usage = `data: ${JSON.stringify({ ...base, choices: [], usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 } })}\n\n`;

/**
 * An OpenAI-compatible upstream on loopback. `failing`: every completion is a 500. Otherwise a two-token
 * stream, except that a prompt saying `hold` is answered only once `release()` is called.
 */
async function upstream(behaviour: 'failing' | 'healthy') {
  let completions = 0;
  let release: () => void = () => {};
  let held = false;
  const released = new Promise<void>((resolve) => {
    release = resolve;
  });
  const server = createServer(async (request: IncomingMessage, response: ServerResponse) => {
    let body = '';
    for await (const part of request) body += part;
    if (request.method === 'GET') {
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ object: 'list', data: [{ id: 'upstream', object: 'model' }] }));
      return;
    }
    completions++;
    if (behaviour === 'failing') {
      response.writeHead(500, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ error: { message: 'engine down', type: 'server_error' } }));
      return;
    }
    if (body.includes('hold')) {
      held = true;
      await released;
    }
    response.writeHead(200, { 'content-type': 'text/event-stream' });
    response.end(
      `${chunk({ role: 'assistant', content: '' })}${chunk({ content: 'one' })}${chunk({ content: ' two' })}${chunk({}, 'stop')}${usage}data: [DONE]\n\n`,
    );
  });
  const listening = await listenOnLoopback(server);
  return {
    ...listening,
    completions: () => completions,
    held: () => held,
    release: () => release(),
  };
}

const engine = (url: string) => ({
  type: 'openai-upstream',
  baseUrl: url,
  connectTimeoutMs: 5000,
  maxConcurrentRequests: 4,
});

async function chat(gateway: Harness, content: string, key?: string): Promise<number> {
  const response = await fetch(`${gateway.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(key && { authorization: `Bearer ${key}` }) },
    body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content }], max_tokens: 8 }),
  });
  await response.text();
  return response.status;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('replica health shared across gateways', () => {
  let redis: RedisServer;
  let broken: Awaited<ReturnType<typeof upstream>>;
  let healthy: Awaited<ReturnType<typeof upstream>>;
  const gateways: Harness[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    broken = await upstream('failing');
    healthy = await upstream('healthy');
    for (let index = 0; index < 2; index++)
      gateways.push(
        await startHarness(undefined, {
          engines: { broken: engine(broken.url), healthy: engine(healthy.url) },
          models: { chat: { engines: ['broken', 'healthy'], upstreamModel: 'upstream' } },
          // Round-robin: a gateway that does not know of the ejection sends every other request to the
          // broken replica. A long ejection keeps a half-open trial out of the test.
          routing: { policy: 'round-robin', health: { consecutiveFailures: 2, ejectionMs: 60_000 } },
          state: { store: 'redis', url: redis.url },
        }),
      );
  }, 60_000);
  afterAll(async () => {
    for (const gateway of gateways) await gateway.close();
    await broken?.close();
    await healthy?.close();
    await redis?.close();
  });

  async function brokenState(gateway: Harness): Promise<string | null> {
    const response = await fetch(`${gateway.url}/v1/routing/replicas`);
    const snapshot = (await response.json()) as {
      replicas: Array<{ id: string; health: { state: string } | null }>;
    };
    return snapshot.replicas.find((replica) => replica.id === 'broken')?.health?.state ?? null;
  }

  it('applies an ejection by one gateway on the other within a second, with no failing request of its own', async () => {
    const [first, second] = gateways as [Harness, Harness];
    // Failures on the broken replica are retried on the healthy one: clients see answers throughout.
    for (let index = 0; index < 10 && (await brokenState(first)) !== 'open'; index++)
      expect(await chat(first, 'hello')).toBe(200);
    expect(await brokenState(first)).toBe('open');
    const ejectedAtMs = Date.now();
    const failuresSeen = broken.completions();

    let appliedAfterMs = Number.POSITIVE_INFINITY;
    while (Date.now() - ejectedAtMs < 3000) {
      if ((await brokenState(second)) === 'open') {
        appliedAfterMs = Date.now() - ejectedAtMs;
        break;
      }
      await sleep(25);
    }
    // Two sync rounds of 250 ms (one to publish, one to read), plus slack for a busy machine.
    expect(appliedAfterMs).toBeLessThan(1500);
    for (let index = 0; index < 6; index++) expect(await chat(second, 'hello')).toBe(200);
    expect(broken.completions()).toBe(failuresSeen);
  }, 60_000);
});

describe('VTC counters shared across gateways', () => {
  let redis: RedisServer;
  let engineServer: Awaited<ReturnType<typeof upstream>>;
  const gateways: Harness[] = [];
  const keys: Record<string, string> = {};

  beforeAll(async () => {
    redis = await startRedis();
    engineServer = await upstream('healthy');
    const store = await openSharedKeyStore({
      store: 'redis',
      url: redis.url,
      onUnavailable: 'open',
      timeoutMs: 250,
      leaseMs: 30_000,
      syncIntervalMs: 250,
    });
    for (const tenant of ['heavy', 'light', 'blocker']) keys[tenant] = createKey(store, { tenant }).key;
    await store.flush();
    store.close();
    for (let index = 0; index < 2; index++)
      gateways.push(
        await startHarness(undefined, {
          engines: { engine: engine(engineServer.url) },
          models: { chat: { engines: ['engine'], upstreamModel: 'upstream' } },
          // One request at a time reaches the engine: the rest wait in Gravity's queue, where VTC orders
          // them.
          scheduling: { slotsPerReplica: 1 },
          state: { store: 'redis', url: redis.url },
        }),
      );
  }, 60_000);
  afterAll(async () => {
    engineServer?.release();
    for (const gateway of gateways) await gateway.close();
    await engineServer?.close();
    await redis?.close();
  });

  it('serves a light tenant first on one gateway when the other tenant is heavy on another', async () => {
    const [first, second] = gateways as [Harness, Harness];
    // The blocker holds the second gateway's one slot; heavy then light queue behind it, in that order.
    const blocked = chat(second, 'hold', keys.blocker);
    while (!engineServer.held()) await sleep(10);
    const finished: string[] = [];
    const heavyThere = chat(second, 'hello', keys.heavy).then((status) => {
      finished.push('heavy');
      return status;
    });
    await sleep(100);
    const lightThere = chat(second, 'hello', keys.light).then((status) => {
      finished.push('light');
      return status;
    });
    await sleep(100);
    // Meanwhile heavy is served plenty through the first gateway.
    const longPrompt = 'many words '.repeat(500);
    for (let index = 0; index < 5; index++) expect(await chat(first, longPrompt, keys.heavy)).toBe(200);
    // Room for a push by the first gateway and a pull by the second (250 ms rounds each).
    await sleep(1500);
    engineServer.release();
    expect(await Promise.all([blocked, heavyThere, lightThere])).toEqual([200, 200, 200]);
    // Alone, the second gateway would see two tenants it served nothing and go by arrival: heavy first.
    expect(finished).toEqual(['light', 'heavy']);
  }, 60_000);
});

describe('the fleet sync while Redis is away', () => {
  let redis: RedisServer;
  const connections: Redis[] = [];
  const states: SharedFleetState<string>[] = [];

  afterAll(async () => {
    for (const state of states) state.close();
    for (const connection of connections) connection.disconnect();
    await redis?.close();
  });

  /** A fleet core with one replica of one slot, and its sync (driven by hand: the timer is far off). */
  async function gateway() {
    const dispatched: string[] = [];
    const core = new FleetCore<string>({
      replicas: [
        {
          id: 'engine',
          models: [{ id: 'm', contextTokens: null }],
          signals: { waitingRequests: 0, runningRequests: 0, kvUsedFraction: null },
          scheduler: schedulerSettings(z.object(schedulingSettingsShape).parse({}), defaults.tiers, 1),
        },
      ],
      routing: routingConfigSchema.parse({}),
      random: () => 0,
      explain: false,
      events: { onDispatch: (attempt) => dispatched.push(attempt.request.tag), onExpire: () => {} },
    });
    const connection = await connectRedis(redis.url, { commandTimeoutMs: 250 });
    connections.push(connection);
    const logged: string[] = [];
    const state = new SharedFleetState({
      redis: connection,
      core,
      clock: systemClock,
      syncIntervalMs: 60_000,
      log: (message) => logged.push(message),
    });
    state.start();
    states.push(state);
    const submit = (tag: string, tenant: string) => {
      const attempt = core.submit(
        fleetRequest({
          tag,
          model: 'm',
          tenant,
          band: 'default',
          promptTokens: 100,
          maxTokens: null,
          promptBlockHashes: null,
        }),
        systemClock.nowMs(),
      );
      return attempt as FleetAttempt<string>;
    };
    const finish = (attempt: FleetAttempt<string>, tokens: number) => {
      core.tokens(attempt, tokens);
      core.finish(attempt, systemClock.nowMs(), null);
    };
    return { core, state, logged, dispatched, submit, finish };
  }

  it('serves on its own figures, logs once, and shares what it served and decided once Redis is back', async () => {
    redis = await startRedis();
    const first = await gateway();
    const second = await gateway();
    // Shared before the outage: the hash of that time is lost with it (the Redis comes back empty).
    first.finish(first.submit('before', 'heavy'), 50);
    await first.state.sync();

    await redis.stop();
    for (let index = 0; index < 3; index++) first.finish(first.submit(`during-${index}`, 'heavy'), 50);
    // Three failures in a row eject (routing.health.consecutiveFailures' default).
    for (let failure = 0; failure < 3; failure++)
      first.core.health.onFailure('engine', systemClock.nowMs(), 'engine down');
    for (let round = 0; round < 3; round++) await first.state.sync();
    expect(first.logged).toHaveLength(1);
    expect(first.logged[0]).toContain('unavailable');

    await redis.start();
    const backAtMs = Date.now();
    while (first.logged.length < 2 && Date.now() - backAtMs < 10_000) {
      await sleep(100);
      await first.state.sync();
    }
    expect(first.logged[1]).toContain('back');

    // On the second gateway heavy queues first, light after it, behind a running request.
    const running = second.submit('running', 'other');
    second.submit('heavy', 'heavy');
    second.submit('light', 'light');
    await second.state.sync();
    // The ejection decided while Redis was away reached the second gateway once it was back.
    expect(second.core.health.isAvailable('engine', systemClock.nowMs())).toBe(false);
    second.finish(running, 1);
    // Heavy's service during the outage counts there: light goes first.
    expect(second.dispatched).toEqual(['running', 'light']);
  }, 60_000);
});
