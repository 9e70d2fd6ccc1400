import { StringDecoder } from 'node:string_decoder';
import type { TokenUsage } from '../core/stream-parts.js';

/** A JSON answer larger than this is not kept for its usage (completions are kilobytes; this is ample). */
const maxJsonBytes = 1 << 20;
/** An SSE line carrying a usage object (not `"usage": null`, which some servers put in every chunk). */
const usageLine = /"usage"\s*:\s*\{/;

/**
 * Reads a model server's response as Envoy passes it through the EPP, chunk by chunk, for the ledger:
 * the usage the server reported (a JSON body's `usage`, an SSE stream's final usage chunk), or, for a
 * stream without one, the content chunks counted as tokens. Keeps a JSON body (up to 1 MiB), and of a
 * stream only its latest usage line and the line still arriving.
 * Lenient, as everything read from an upstream: a body it cannot read gives counted figures.
 */
export class ResponseUsageReader {
  private sse: boolean | null = null;
  private json: Buffer[] = [];
  private jsonBytes = 0;
  /** The last complete SSE data line with a usage object: the server's final usage chunk. */
  private lastUsageLine: string | null = null;
  private partialLine = '';
  /** Decodes across chunk boundaries: a character may be split between two chunks. */
  private readonly decoder = new StringDecoder('utf8');
  private contentChunks = 0;
  private firstContentSeen = false;

  constructor(private readonly onFirstContent: () => void) {}

  /** The response's content type, from its headers. */
  contentType(value: string): void {
    this.sse = value.toLowerCase().includes('text/event-stream');
  }

  chunk(bytes: Buffer): void {
    if (bytes.length === 0) return;
    if (!this.firstContentSeen) {
      this.firstContentSeen = true;
      this.onFirstContent();
    }
    if (this.sse !== true) {
      if (this.jsonBytes + bytes.length <= maxJsonBytes) this.json.push(bytes);
      this.jsonBytes += bytes.length;
      if (this.sse === false) return;
    }
    // Per chunk of a streamed response: one decode and one split; lines are looked at, not kept, except
    // the latest usage line (the usage chunk comes last, just before `[DONE]`).
    const lines = (this.partialLine + this.decoder.write(bytes)).split('\n');
    this.partialLine = lines.pop() ?? '';
    // A "line" that never ends is no SSE: it is not kept growing.
    if (this.partialLine.length > maxJsonBytes) this.partialLine = '';
    for (const line of lines) {
      if (!line.startsWith('data:')) continue;
      if (line.includes('"choices":[{')) this.contentChunks++;
      if (usageLine.test(line)) this.lastUsageLine = line;
    }
  }

  /** The figures at the end of the response; `promptTokensEstimate` stands in when none were reported. */
  usage(promptTokensEstimate: number): TokenUsage {
    const reported = this.sse === true ? this.sseUsage() : this.jsonUsage();
    if (reported) return reported;
    return {
      promptTokens: promptTokensEstimate,
      cachedPromptTokens: 0,
      completionTokens: this.sse === true ? this.contentChunks : 0,
      source: 'counted',
    };
  }

  private jsonUsage(): TokenUsage | null {
    if (this.jsonBytes === 0 || this.jsonBytes > maxJsonBytes) return null;
    try {
      return usageOf(JSON.parse(Buffer.concat(this.json).toString('utf8')));
    } catch {
      return null;
    }
  }

  private sseUsage(): TokenUsage | null {
    const last = usageLine.test(this.partialLine) ? this.partialLine : this.lastUsageLine;
    if (last === null) return null;
    try {
      return usageOf(JSON.parse(last.slice('data:'.length)));
    } catch {
      // Not JSON after all: the figures are counted instead.
      return null;
    }
  }
}

function usageOf(body: unknown): TokenUsage | null {
  if (body === null || typeof body !== 'object') return null;
  const usage = (body as { usage?: unknown }).usage;
  if (usage === null || typeof usage !== 'object') return null;
  const figures = usage as Record<string, unknown>;
  const prompt = count(figures.prompt_tokens);
  // An embeddings answer reports prompt and total tokens only (equal: it generates none).
  const completion =
    figures.completion_tokens === undefined && prompt !== null && figures.total_tokens === prompt
      ? 0
      : count(figures.completion_tokens);
  if (prompt === null || completion === null) return null;
  const details = figures.prompt_tokens_details as Record<string, unknown> | null | undefined;
  return {
    promptTokens: prompt,
    cachedPromptTokens: count(details?.cached_tokens) ?? 0,
    completionTokens: completion,
    source: 'upstream',
  };
}

function count(value: unknown): number | null {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 ? value : null;
}
