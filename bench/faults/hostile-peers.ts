// Hostile peers: `gravity serve` in front of test/support/fault-upstream.ts (run here, in the benchmark's
// process: it is the peer, not the gateway) and raw-socket clients that misbehave, one case at a time.
// Issue 14's targets, measured rather than asserted (the tests in test/fault-injection.test.ts,
// test/http-edge.test.ts and test/llama-cpp-prompt-bound.test.ts check the behaviour): no single request,
// upstream or client blocks Gravity's event loop for more than 100 ms, and every stalled peer ends within
// its configured timeout. Per case: how it ended, how long it took against its bound, Gravity's own longest
// event-loop delay (a probe preloaded into the server reports it over IPC), the longest `/healthz` answer
// seen from outside (polled every ~20 ms from a worker thread, so this process's upstream work does not
// delay the poll), and the server's RSS before and at its peak. An `idle` row first is the baseline.
//   npm run bench:faults -- --help
//   npm run bench:faults -- --quick

import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { maxUpstreamEventChars } from '../../src/engines/openai-upstream/sse-event-parser.js';
import { SqliteLedgerStore } from '../../src/metering/ledger/sqlite-ledger-store.js';
import type { UsageRecord } from '../../src/metering/usage-record.js';
import { type FaultMode, startFaultUpstream } from '../../test/support/fault-upstream.js';
import { repoRoot } from '../support/ab-rounds.js';
import { askChild, ChildProcessGroup, type ManagedChild, startGravity } from '../support/child-processes.js';
import { type EventLoopDelayStats, probeMessages } from '../support/event-loop-probe.js';
import { processRssBytes } from '../support/process-stats.js';
import {
  columnsTable,
  fixed,
  integer,
  number,
  printPreamble,
  readOptions,
  verdict,
} from '../support/report-format.js';

const options = readOptions(
  'bench:faults',
  'Gravity under hostile upstreams and clients: time to end against each bound, event-loop delay, /healthz, RSS.',
  {
    endlessLineMb: number(60, 'MiB the endless-line upstream sends without a newline', { quick: 16 }),
    hugeEventMb: number(10, 'MiB of content in the huge-event upstream’s one event', { quick: 9 }),
    promptMb: number(4, 'MB of prompt sent to the llama-cpp model (the body limit is raised to fit)', {
      quick: 1,
    }),
    concurrentPrompts: integer(8, 'oversized prompts sent at once in the second prompt case', { quick: 4 }),
    peers: integer(4, 'stalled streams of each kind, non-reading clients, slowloris bodies and headers', {
      quick: 2,
    }),
    usageRequests: integer(50, 'requests whose upstream reports negative usage', { quick: 10 }),
    timeoutMs: integer(2000, 'every configured bound: first token, idle, headers, body, write stall', {
      quick: 1000,
    }),
    slackMs: integer(1000, 'time past its bound a stalled peer may take and still pass'),
    loopTargetMs: number(100, 'longest event-loop delay a hostile case may cause and still pass'),
    settleMs: integer(500, 'quiet time before and after each case', { quick: 300 }),
  },
);

const mib = 1024 * 1024;
const probeIntervalMs = 20;
const tinyModel = 'gravity-tiny';
const eventLoopProbe = fileURLToPath(new URL('../support/event-loop-probe.ts', import.meta.url));
const modes = [
  'endless-line',
  'huge-event',
  'stall-before-first-byte',
  'stall-mid-stream',
  'flood',
  'usage-negative',
] as const satisfies readonly FaultMode[];

/** How one peer of a case ended. */
interface PeerResult {
  outcome: string;
  elapsedMs: number;
  /** The configured bound it must end within, or null where the bound is a size, not a time. */
  boundMs: number | null;
}

interface CaseRow {
  name: string;
  hostile: boolean;
  peers: PeerResult[];
  /** A line on what the case checked beyond time (a size bound, a count). */
  note: string;
  /** Whether every peer ended as a user should see it (null for the idle baseline). */
  expected: boolean | null;
  loopMaxMs: number | null;
  healthzMaxMs: number | null;
  healthzFailures: number;
  rssBeforeMb: number | null;
  rssPeakMb: number | null;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls `/healthz` from a worker thread: the fault upstream writes tens of megabytes from this thread, and
 * its work must not show up as Gravity's latency. `start` resets the figures, `stop` answers them.
 */
class HealthzPoller {
  private readonly worker: Worker;

  constructor(url: string) {
    const source = `
      const { parentPort, workerData } = require('node:worker_threads');
      let running = false, maxMs = 0, failures = 0, count = 0;
      const loop = async () => {
        while (running) {
          const startedAt = performance.now();
          try {
            const response = await fetch(workerData.url, { signal: AbortSignal.timeout(30000) });
            await response.arrayBuffer();
            if (response.status !== 200) failures++;
          } catch { failures++; }
          const latencyMs = performance.now() - startedAt;
          count++;
          if (latencyMs > maxMs) maxMs = latencyMs;
          const rest = workerData.intervalMs - latencyMs;
          if (rest > 0) await new Promise((resolve) => setTimeout(resolve, rest));
        }
        parentPort.postMessage({ maxMs, failures, count });
      };
      parentPort.on('message', (message) => {
        if (message === 'start') { running = true; maxMs = 0; failures = 0; count = 0; loop(); }
        else if (message === 'stop') running = false;
      });`;
    this.worker = new Worker(source, {
      eval: true,
      workerData: { url: `${url}/healthz`, intervalMs: probeIntervalMs },
    });
  }

  start(): void {
    this.worker.postMessage('start');
  }

  stop(): Promise<{ maxMs: number; failures: number; count: number }> {
    return new Promise((resolve) => {
      this.worker.once('message', resolve);
      this.worker.postMessage('stop');
    });
  }

  close(): Promise<number> {
    return this.worker.terminate();
  }
}

/**
 * The server's peak resident memory during a case: VmHWM after resetting it (`clear_refs` 5, Linux ≥ 4.0),
 * else the largest of samples taken every few milliseconds (which can miss a short spike).
 */
class PeakRss {
  private sampledBytes = 0;
  private readonly timer: NodeJS.Timeout;
  private readonly highWaterReset: boolean;

  constructor(private readonly pid: number | undefined) {
    let reset = false;
    try {
      writeFileSync(`/proc/${pid}/clear_refs`, '5');
      reset = true;
    } catch {}
    this.highWaterReset = reset;
    this.timer = setInterval(() => {
      this.sampledBytes = Math.max(this.sampledBytes, processRssBytes(pid) ?? 0);
    }, probeIntervalMs);
  }

  stop(): number | null {
    clearInterval(this.timer);
    let peak = Math.max(this.sampledBytes, processRssBytes(this.pid) ?? 0);
    if (this.highWaterReset) {
      try {
        const status = readFileSync(`/proc/${this.pid}/status`, 'utf8');
        const match = status.match(/^VmHWM:\s+(\d+) kB$/m);
        if (match) peak = Math.max(peak, Number(match[1]) * 1024);
      } catch {}
    }
    return peak === 0 ? null : peak;
  }
}

function chatBody(model: string, content: string, stream: boolean): string {
  return JSON.stringify({
    model,
    messages: [{ role: 'user', content }],
    max_tokens: 16,
    stream,
    ...(stream ? { stream_options: { include_usage: true } } : {}),
  });
}

/** The error code in a JSON error body, or in the last SSE event of a stream that ended with one. */
function errorCodeIn(text: string): string | null {
  const candidates = [text, ...text.split('\n\n').map((block) => block.replace(/^data: /, ''))].reverse();
  for (const candidate of candidates) {
    if (!candidate.startsWith('{')) continue;
    try {
      const code = (JSON.parse(candidate) as { error?: { code?: unknown } }).error?.code;
      if (code !== undefined) return String(code);
    } catch {}
  }
  return null;
}

/** Whether a request ended with `code`: a JSON error, or an SSE error event after a 200. */
function endedWith(peer: PeerResult, code: string): boolean {
  return peer.outcome === `502 ${code}` || peer.outcome === `504 ${code}` || peer.outcome === `200 ${code}`;
}

/** Counts of each outcome, e.g. `4× 504 upstream_timeout`. */
function summarise(outcomes: string[]): string {
  const counts = new Map<string, number>();
  for (const outcome of outcomes) counts.set(outcome, (counts.get(outcome) ?? 0) + 1);
  return [...counts].map(([outcome, count]) => `${count}× ${outcome}`).join(', ');
}

const children = new ChildProcessGroup();
const workDir = await mkdtemp(path.join(os.tmpdir(), 'gravity-faults-'));
const upstream = await startFaultUpstream({
  endlessLineBytes: options.endlessLineMb * mib,
  hugeEventBytes: Math.round(options.hugeEventMb * mib),
});
let crashed: ManagedChild | null = null;
children.unexpectedExit = (child) => {
  crashed = child;
};
let healthz: HealthzPoller | null = null;

try {
  const configPath = path.join(workDir, 'gravity.json');
  const ledgerPath = path.join(workDir, 'ledger.sqlite');
  const bound = options.timeoutMs;
  const upstreamEngine = {
    type: 'openai-upstream',
    baseUrl: upstream.url,
    connectTimeoutMs: bound,
    firstTokenTimeoutMs: bound,
    idleTimeoutMs: bound,
    maxConcurrentRequests: 64,
  };
  // JSON is YAML. A file with engines replaces the generated models, so the llama-cpp one is named here.
  await writeFile(
    configPath,
    JSON.stringify({
      server: {
        headersTimeoutMs: bound,
        bodyTimeoutMs: bound,
        writeStallTimeoutMs: bound,
        bodyLimitBytes: Math.max(4 * mib, Math.ceil(options.promptMb * 1e6) + 64 * 1024),
      },
      engines: {
        tiny: { type: 'llama-cpp', model: { generated: tinyModel }, embeddingContexts: 0 },
        ...Object.fromEntries(modes.map((mode) => [`e-${mode}`, upstreamEngine])),
      },
      models: {
        [tinyModel]: { engine: 'tiny' },
        ...Object.fromEntries(
          modes.map((mode) => [`g-${mode}`, { engine: `e-${mode}`, upstreamModel: mode }]),
        ),
      },
      // One engine per mode and no ejection: each case meets its own fault, not one an earlier case left.
      routing: { health: { consecutiveFailures: 1000, intervalMs: 0 } },
      metering: { ledgerPath },
    }),
  );
  const { child, url, port, argv } = await startGravity(children, {
    name: 'gravity',
    configPath,
    dataDir: path.join(workDir, 'data'),
    build: { dir: repoRoot, entry: ['--import', 'tsx', '--import', eventLoopProbe, 'src/cli/main.ts'] },
    eventLoopProbe: true,
  });
  const pid = child.process.pid;
  healthz = new HealthzPoller(url);
  printPreamble('Gravity under hostile peers', 'bench:faults', [
    `bounds:   first token, idle, connect, headers, body and write stall ${bound} ms each; SSE event cap ` +
      `${maxUpstreamEventChars / mib} Mi characters; pass: ended within bound + ${options.slackMs} ms, ` +
      `loop delay ≤ ${options.loopTargetMs} ms`,
    `server:   ${argv.slice(1).join(' ')}`,
    `upstream: test/support/fault-upstream.ts in the benchmark's process; /healthz polled every ${probeIntervalMs} ms from a worker thread`,
  ]);

  const readLoop = async (): Promise<EventLoopDelayStats | null> =>
    (
      await askChild<{ stats: EventLoopDelayStats }>(
        child,
        { type: probeMessages.read },
        probeMessages.stats,
        10_000,
      ).catch(() => null)
    )?.stats ?? null;

  const rows: CaseRow[] = [];
  /** Runs one case alone: settle, reset the probes, run, let the loop settle, read them. */
  const runCase = async (
    name: string,
    hostile: boolean,
    body: () => Promise<{ peers: PeerResult[]; note?: string; expected: boolean | null }>,
  ) => {
    await sleep(options.settleMs);
    const rssBefore = processRssBytes(pid);
    const peak = new PeakRss(pid);
    child.process.send({ type: probeMessages.reset });
    healthz?.start();
    const { peers, note = '', expected } = await body();
    await sleep(options.settleMs);
    const loop = await readLoop();
    const poll = await healthz!.stop();
    const rssPeak = peak.stop();
    const row: CaseRow = {
      name,
      hostile,
      peers,
      note,
      expected,
      loopMaxMs: loop?.maxMs ?? null,
      healthzMaxMs: poll.count > 0 ? poll.maxMs : null,
      healthzFailures: poll.failures,
      rssBeforeMb: rssBefore === null ? null : rssBefore / mib,
      rssPeakMb: rssPeak === null ? null : rssPeak / mib,
    };
    rows.push(row);
    const ended = peers.map((peer) => peer.elapsedMs);
    // Progress on stderr, so stdout stays the report.
    const ending = peers.length
      ? `${summarise(peers.map((peer) => peer.outcome))}, ended in ${fixed(Math.max(...ended))} ms; `
      : '';
    console.error(
      `  ${name}: ${ending}loop max ${fixed(row.loopMaxMs, 1)} ms, /healthz max ${fixed(row.healthzMaxMs, 1)} ms`,
    );
  };

  /** One chat request through fetch, read to its end. */
  const chat = async (model: string, content: string, stream: boolean, boundMs: number | null) => {
    const startedAt = performance.now();
    try {
      const response = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: chatBody(model, content, stream),
      });
      const text = await response.text();
      const code = errorCodeIn(text);
      return {
        peer: {
          outcome: `${response.status}${code ? ` ${code}` : ''}`,
          elapsedMs: performance.now() - startedAt,
          boundMs,
        },
        text,
        status: response.status,
      };
    } catch (error) {
      return {
        peer: {
          outcome: `failed: ${(error as Error).message}`,
          elapsedMs: performance.now() - startedAt,
          boundMs,
        },
        text: '',
        status: 0,
      };
    }
  };

  const rawSocket = () =>
    new Promise<Socket>((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port }, () => resolve(socket));
      socket.once('error', reject);
    });

  /** A raw client that writes `head`, then `dribble` every 200 ms until the server closes the connection. */
  const stalledClient = async (head: string, dribble: string, boundMs: number): Promise<PeerResult> => {
    const socket = await rawSocket();
    socket.on('error', () => {});
    const startedAt = performance.now();
    let received = '';
    socket.setEncoding('utf8').on('data', (text: string) => {
      received += text;
    });
    socket.write(head);
    const timer = setInterval(() => {
      if (!socket.destroyed) socket.write(dribble);
    }, 200);
    const giveUpMs = boundMs + options.slackMs + 10_000;
    const closed = await Promise.race([
      new Promise<boolean>((resolve) => socket.once('close', () => resolve(true))),
      sleep(giveUpMs).then(() => false),
    ]);
    clearInterval(timer);
    socket.destroy();
    const status = /^HTTP\/1\.1 (\d+)/.exec(received)?.[1];
    const code = errorCodeIn(received.split('\r\n\r\n').slice(1).join('\r\n\r\n'));
    return {
      outcome: closed ? `${status ?? 'closed'}${code ? ` ${code}` : ''}` : `still open after ${giveUpMs} ms`,
      elapsedMs: performance.now() - startedAt,
      boundMs,
    };
  };

  const ledgerRecords = async (model: string): Promise<UsageRecord[]> => {
    const ledger = new SqliteLedgerStore(ledgerPath);
    try {
      return (await ledger.records({})).filter((record) => record.model === model);
    } finally {
      await ledger.close();
    }
  };

  // Warm-up: the llama-cpp model and every route have answered once before anything is measured.
  await chat(tinyModel, 'Hello', false, null);
  await chat('g-usage-negative', 'Hello', true, null);

  await runCase('idle', false, async () => {
    await sleep(2000);
    return { peers: [], note: 'no traffic but /healthz', expected: null };
  });

  await runCase(`endless line ${options.endlessLineMb} MiB`, true, async () => {
    const result = await chat('g-endless-line', 'Say something.', true, null);
    const [exchange] = upstream.exchangesOf('endless-line');
    return {
      peers: [result.peer],
      note: `upstream wrote ${fixed((exchange?.bytesWritten ?? 0) / mib, 1)} MiB before Gravity dropped it`,
      expected: endedWith(result.peer, 'upstream_error'),
    };
  });

  await runCase(`huge event ${options.hugeEventMb} MiB`, true, async () => {
    const result = await chat('g-huge-event', 'Say something.', true, null);
    return {
      peers: [result.peer],
      note: `event cap ${maxUpstreamEventChars / mib} Mi characters`,
      expected: endedWith(result.peer, 'upstream_error'),
    };
  });

  await runCase(`${options.peers}+${options.peers} stalled streams`, true, async () => {
    const results = await Promise.all([
      ...Array.from({ length: options.peers }, () =>
        chat('g-stall-before-first-byte', 'Say something.', true, bound),
      ),
      ...Array.from({ length: options.peers }, () =>
        chat('g-stall-mid-stream', 'Say something.', true, bound),
      ),
    ]);
    const open = [
      ...upstream.exchangesOf('stall-before-first-byte'),
      ...upstream.exchangesOf('stall-mid-stream'),
    ].length;
    const closedUpstream = [
      ...upstream.exchangesOf('stall-before-first-byte'),
      ...upstream.exchangesOf('stall-mid-stream'),
    ].filter((exchange) => exchange.closedAtMs !== null).length;
    return {
      peers: results.map((result) => result.peer),
      note: `before first byte / mid-stream; upstream connections dropped: ${closedUpstream} of ${open}`,
      expected:
        closedUpstream === open && results.every((result) => endedWith(result.peer, 'upstream_timeout')),
    };
  });

  const prompt = 'lorem ipsum '.repeat(Math.ceil((options.promptMb * 1e6) / 12));
  await runCase(`prompt ${options.promptMb} MB ×1`, true, async () => {
    const result = await chat(tinyModel, prompt, false, null);
    return {
      peers: [result.peer],
      note: 'llama-cpp model',
      expected: result.peer.outcome === '400 context_length_exceeded',
    };
  });
  await runCase(`prompt ${options.promptMb} MB ×${options.concurrentPrompts}`, true, async () => {
    const results = await Promise.all(
      Array.from({ length: options.concurrentPrompts }, () => chat(tinyModel, prompt, false, null)),
    );
    return {
      peers: results.map((result) => result.peer),
      note: 'llama-cpp model, at once',
      expected: results.every((result) => result.peer.outcome === '400 context_length_exceeded'),
    };
  });

  await runCase(`${options.peers} non-reading clients`, true, async () => {
    const body = chatBody('g-flood', 'Say something.', true);
    const sentAtMs = Date.now();
    const sockets = await Promise.all(
      Array.from({ length: options.peers }, async () => {
        const socket = await rawSocket();
        socket.on('error', () => {});
        socket.write(
          `POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n` +
            `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
        );
        // Never read: the kernel's buffers fill and Gravity's writes stall.
        socket.pause();
        return socket;
      }),
    );
    // Gravity drops a stalled client's request and with it the upstream stream: that close is the end.
    const giveUpAt = Date.now() + bound + options.slackMs + 15_000;
    let records: UsageRecord[] = [];
    while (Date.now() < giveUpAt) {
      records = await ledgerRecords('g-flood');
      const exchanges = upstream.exchangesOf('flood');
      if (records.length >= options.peers && exchanges.every((exchange) => exchange.closedAtMs !== null))
        break;
      await sleep(100);
    }
    for (const socket of sockets) socket.destroy();
    const exchanges = upstream.exchangesOf('flood');
    const written = exchanges.map((exchange) => exchange.bytesWritten / mib);
    const statuses = summarise(records.map((record) => String(record.status)));
    return {
      peers: exchanges.map((exchange) => ({
        outcome: exchange.closedAtMs === null ? 'still streaming' : 'upstream dropped',
        elapsedMs: (exchange.closedAtMs ?? Date.now()) - sentAtMs,
        boundMs: bound,
      })),
      note:
        `ledger: ${statuses || 'no records'}; upstream wrote ${fixed(Math.min(...written), 1)}–` +
        `${fixed(Math.max(...written), 1)} MiB each; time from the request to the upstream's close`,
      expected:
        exchanges.length === options.peers &&
        exchanges.every((exchange) => exchange.closedAtMs !== null) &&
        records.length === options.peers &&
        records.every((record) => record.status === 499),
    };
  });

  await runCase(`${options.peers}+${options.peers} slowloris bodies, headers`, true, async () => {
    const bodyHead =
      'POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n' +
      'content-length: 100000\r\n\r\n{';
    const headersHead = 'POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n';
    const peers = await Promise.all([
      ...Array.from({ length: options.peers }, () => stalledClient(bodyHead, ' ', bound)),
      ...Array.from({ length: options.peers }, () => stalledClient(headersHead, 'x', bound)),
    ]);
    return {
      peers,
      note: 'one byte every 200 ms; bodies / headers',
      expected: peers.every((peer) => peer.outcome.startsWith('408')),
    };
  });

  await runCase(`usage-negative ×${options.usageRequests}`, true, async () => {
    const results: Array<Awaited<ReturnType<typeof chat>>> = [];
    for (let index = 0; index < options.usageRequests; index += 10)
      results.push(
        ...(await Promise.all(
          Array.from({ length: Math.min(10, options.usageRequests - index) }, () =>
            chat('g-usage-negative', 'Say something.', true, null),
          ),
        )),
      );
    // The usage the client saw (the last chunk with one) and what the ledger kept: neither negative.
    const negativeSeen = results.filter((result) =>
      result.text.split('\n\n').some((block) => {
        const usage = /"usage":(\{[^}]*\})/.exec(block)?.[1];
        return usage !== undefined && /:-\d/.test(usage);
      }),
    ).length;
    const records = await ledgerRecords('g-usage-negative');
    const negativeKept = records.filter(
      (record) => record.promptTokens < 0 || record.completionTokens < 0 || (record.priceUsd ?? 0) < 0,
    ).length;
    return {
      peers: results.map((result) => result.peer),
      note: `negative usage: ${negativeSeen} answers, ${negativeKept} of ${records.length} ledger records`,
      expected: results.every((result) => result.status === 200) && negativeSeen === 0 && negativeKept === 0,
    };
  });

  console.log(
    columnsTable(rows, [
      ['case', (row) => row.name],
      ['outcome', (row) => (row.peers.length ? summarise(row.peers.map((peer) => peer.outcome)) : '–')],
      [
        'ended in (ms)',
        (row) => (row.peers.length ? fixed(Math.max(...row.peers.map((peer) => peer.elapsedMs))) : '–'),
      ],
      [
        'bound (ms)',
        (row) => {
          const bounds = row.peers.flatMap((peer) => (peer.boundMs === null ? [] : [peer.boundMs]));
          return bounds.length ? fixed(Math.max(...bounds)) : '–';
        },
      ],
      ['loop max (ms)', (row) => fixed(row.loopMaxMs, 1)],
      [
        '/healthz max (ms)',
        (row) =>
          `${fixed(row.healthzMaxMs, 1)}${row.healthzFailures ? ` (${row.healthzFailures} failed)` : ''}`,
      ],
      ['RSS before → peak (MB)', (row) => `${fixed(row.rssBeforeMb, 0)} → ${fixed(row.rssPeakMb, 0)}`],
    ]),
  );
  console.log('');
  for (const row of rows) console.log(`${row.name}: ${row.note}`);
  console.log('');

  const hostile = rows.filter((row) => row.hostile);
  const worstLoop = hostile.reduce<CaseRow | null>(
    (worst, row) => ((row.loopMaxMs ?? -1) > (worst?.loopMaxMs ?? -1) ? row : worst),
    null,
  );
  const loopKnown = hostile.every((row) => row.loopMaxMs !== null);
  verdict(!crashed && child.exitCode === null, 'the server ran to the end');
  verdict(
    loopKnown ? (worstLoop?.loopMaxMs ?? 0) <= options.loopTargetMs : null,
    `longest event-loop delay in a hostile case ≤ ${options.loopTargetMs} ms: ${fixed(worstLoop?.loopMaxMs, 1)} ms ` +
      `(${worstLoop?.name ?? '–'}); idle ${fixed(rows[0]?.loopMaxMs, 1)} ms`,
  );
  const unexpected = rows.filter((row) => row.expected === false);
  verdict(
    unexpected.length === 0,
    `every case ended as a user should see it (upstream_error, upstream_timeout, 400 context_length_exceeded, ` +
      `499, 408, 200 without negative usage)${unexpected.length ? `; not: ${unexpected.map((row) => row.name).join(', ')}` : ''}`,
  );
  const bounded = rows.flatMap((row) =>
    row.peers.flatMap((peer) => (peer.boundMs === null ? [] : [{ row: row.name, ...peer }])),
  );
  const late = bounded.filter((peer) => !(peer.elapsedMs <= (peer.boundMs ?? 0) + options.slackMs));
  verdict(
    bounded.length > 0 && late.length === 0,
    `every stalled peer ended within its bound + ${options.slackMs} ms: ${bounded.length - late.length} of ${bounded.length}` +
      (late.length
        ? ` (late: ${late.map((peer) => `${peer.row} ${fixed(peer.elapsedMs)} ms, ${peer.outcome}`).join('; ')})`
        : ''),
  );
} finally {
  await healthz?.close();
  await children.stopAll(5000);
  children.dispose();
  await upstream.close();
  await rm(workDir, { recursive: true, force: true });
}
