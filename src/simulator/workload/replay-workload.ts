import { closeSync, openSync, readSync } from 'node:fs';
import { type ServiceBand, serviceBands } from '../../core/service-tiers.js';
import { chainBlockHash } from '../../performance-model/block-hashes.js';
import type { SimulatedRequest, WorkloadSource } from './workload-source.js';

/** One recorded request, whatever file it came from. */
export interface ReplayedRequest {
  arrivalMs: number;
  promptTokens: number;
  outputTokens: number;
  tenant: string;
  tier: ServiceBand;
  /** Content ids of the prompt's blocks of `hashBlockTokens` tokens (Mooncake's `hash_ids`). */
  hashIds: number[] | null;
}

/**
 * Replays recorded requests at their recorded times (scaled). Lines are read as the simulation reaches
 * them, so a trace of millions of requests needs memory for one line at a time.
 */
export class ReplayWorkload implements WorkloadSource {
  readonly expectedRequests: number | null;
  private next: ReplayedRequest | null;
  private created = 0;
  private firstArrivalMs: number | null = null;

  constructor(
    private readonly records: Iterator<ReplayedRequest>,
    private readonly options: {
      timeScale: number;
      maxRequests: number;
      endMs: number;
      blockTokens: number;
      hashBlockTokens: number;
      contextTokens: number;
      expectedRequests: number | null;
    },
  ) {
    this.expectedRequests = options.expectedRequests;
    this.next = this.read();
  }

  private read(): ReplayedRequest | null {
    const result = this.records.next();
    return result.done ? null : result.value;
  }

  private arrivalOf(record: ReplayedRequest): number {
    this.firstArrivalMs ??= record.arrivalMs;
    return (record.arrivalMs - this.firstArrivalMs) * this.options.timeScale;
  }

  peekArrivalMs(): number {
    if (!this.next || this.created >= this.options.maxRequests) return Number.POSITIVE_INFINITY;
    const atMs = this.arrivalOf(this.next);
    return atMs < this.options.endMs ? atMs : Number.POSITIVE_INFINITY;
  }

  takeArrival(): SimulatedRequest {
    const record = this.next as ReplayedRequest;
    const arrivalMs = this.peekArrivalMs();
    this.next = this.read();
    const context = this.options.contextTokens;
    const promptTokens = Math.max(1, Math.min(record.promptTokens, context - 1));
    return {
      id: this.created++,
      arrivalMs,
      tenant: record.tenant,
      tier: record.tier,
      promptTokens,
      outputTokens: Math.max(1, Math.min(record.outputTokens, context - promptTokens)),
      promptBlockHashes: record.hashIds ? this.expandHashIds(record.hashIds, promptTokens) : null,
      outputSeed: null,
      client: null,
    };
  }

  onComplete(): null {
    return null;
  }

  /** A trace block of `hashBlockTokens` tokens becomes that many / blockTokens KV blocks, chained. */
  private expandHashIds(hashIds: number[], promptTokens: number): number[] {
    const hashes: number[] = [];
    const fullBlocks = Math.floor(promptTokens / this.options.blockTokens);
    const perTraceBlock = this.options.hashBlockTokens / this.options.blockTokens;
    let previous = 0;
    for (let block = 0; block < fullBlocks; block++) {
      const traceBlock = Math.floor(block / perTraceBlock);
      if (traceBlock >= hashIds.length) break;
      previous = chainBlockHash(previous, (hashIds[traceBlock] as number) * 4099 + block);
      hashes.push(previous);
    }
    return hashes;
  }
}

function asTier(value: unknown): ServiceBand {
  return typeof value === 'string' && (serviceBands as readonly string[]).includes(value)
    ? (value as ServiceBand)
    : 'default';
}

function firstNumber(line: Record<string, unknown>, keys: string[]): number | undefined {
  for (const key of keys) {
    const value = line[key];
    if (typeof value === 'number' && Number.isFinite(value)) return value;
  }
  return undefined;
}

/**
 * Reads a JSONL trace line by line. Field names of common public traces are accepted: `timestamp` (ms,
 * Mooncake/Azure-style) or `arrival_ms` or `arrival_s`; `input_length`/`input_tokens`/`prompt_tokens`;
 * `output_length`/`output_tokens`/`completion_tokens`; optional `hash_ids`, `tenant`, `tier`.
 */
export function* readTraceFile(filePath: string): Generator<ReplayedRequest> {
  const descriptor = openSync(filePath, 'r');
  const buffer = Buffer.alloc(1 << 16);
  let pending = '';
  let lineNumber = 0;
  const parse = (text: string): ReplayedRequest | null => {
    lineNumber++;
    if (text.trim() === '') return null;
    let line: Record<string, unknown>;
    try {
      line = JSON.parse(text) as Record<string, unknown>;
    } catch {
      throw new Error(`${filePath}:${lineNumber}: not valid JSON`);
    }
    const seconds = firstNumber(line, ['arrival_s']);
    const arrivalMs = seconds !== undefined ? seconds * 1000 : firstNumber(line, ['timestamp', 'arrival_ms']);
    const promptTokens = firstNumber(line, ['input_length', 'input_tokens', 'prompt_tokens']);
    const outputTokens = firstNumber(line, ['output_length', 'output_tokens', 'completion_tokens']);
    if (arrivalMs === undefined || promptTokens === undefined || outputTokens === undefined)
      throw new Error(
        `${filePath}:${lineNumber}: needs an arrival (timestamp | arrival_ms | arrival_s), input_length and output_length`,
      );
    const hashIds = Array.isArray(line.hash_ids) ? (line.hash_ids as unknown[]).map(Number) : null;
    return {
      arrivalMs,
      promptTokens,
      outputTokens,
      tenant: typeof line.tenant === 'string' ? line.tenant : 'default',
      tier: asTier(line.tier),
      hashIds,
    };
  };
  try {
    for (;;) {
      const bytes = readSync(descriptor, buffer, 0, buffer.length, null);
      if (bytes === 0) break;
      pending += buffer.toString('utf8', 0, bytes);
      let newline = pending.indexOf('\n');
      while (newline >= 0) {
        const record = parse(pending.slice(0, newline));
        pending = pending.slice(newline + 1);
        if (record) yield record;
        newline = pending.indexOf('\n');
      }
    }
    const last = parse(pending);
    if (last) yield last;
  } finally {
    closeSync(descriptor);
  }
}
