import type { TokenUsage } from '../core/stream-parts.js';

/** A JSON answer larger than this is not kept for its usage (completions are kilobytes; this is ample). */
const maxJsonBytes = 1 << 20;
/** The SSE tail kept for the final usage chunk, which comes last, just before `[DONE]`. */
const sseTailBytes = 64 * 1024;

/**
 * Reads a model server's response as Envoy passes it through the EPP, chunk by chunk, for the ledger:
 * the usage the server reported (a JSON body's `usage`, an SSE stream's final usage chunk), or, for a
 * stream without one, the content chunks counted as tokens. Keeps at most a bounded tail of the bytes.
 * Lenient, as everything read from an upstream: a body it cannot read gives counted figures.
 */
export class ResponseUsageReader {
  private sse: boolean | null = null;
  private json: Buffer[] = [];
  private jsonBytes = 0;
  private tail = '';
  private partialLine = '';
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
    // Count data events as they pass (the stream is not kept), and keep the tail for the usage chunk.
    const text = this.partialLine + bytes.toString('utf8');
    const lines = text.split('\n');
    this.partialLine = lines.pop() ?? '';
    for (const line of lines)
      if (line.startsWith('data:') && line.includes('"choices":[{')) this.contentChunks++;
    this.tail = (this.tail + text.slice(0, text.length - this.partialLine.length)).slice(-sseTailBytes);
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
    const lines = (this.tail + this.partialLine).split('\n');
    for (let index = lines.length - 1; index >= 0; index--) {
      const line = lines[index] as string;
      if (!line.startsWith('data:') || !line.includes('"usage"')) continue;
      try {
        const usage = usageOf(JSON.parse(line.slice(5)));
        if (usage) return usage;
      } catch {
        // A chunk cut by the tail's bound, or not JSON: look further back.
      }
    }
    return null;
  }
}

function usageOf(body: unknown): TokenUsage | null {
  if (body === null || typeof body !== 'object') return null;
  const usage = (body as { usage?: unknown }).usage;
  if (usage === null || typeof usage !== 'object') return null;
  const figures = usage as Record<string, unknown>;
  const prompt = count(figures.prompt_tokens);
  const completion = count(figures.completion_tokens);
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
