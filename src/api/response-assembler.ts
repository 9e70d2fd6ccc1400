import type { Endpoint } from '../core/request-context.js';
import type { ContentPart, FinishReason, WireChunkChoice } from '../core/stream-parts.js';

/**
 * Builds a whole (non-streamed) response's choices from the parts an engine streamed, the way the
 * OpenAI SDK assembles a stream: content and other text fields concatenated, tool calls merged by their
 * index (arguments concatenated), logprobs arrays joined, the last finish reason kept. Fields Gravity does
 * not model (`reasoning_content`, `annotations` …) are kept: text is concatenated, anything else is
 * taken as last sent. So are a choice's own extra fields (vLLM's `stop_reason`), as last sent.
 *
 * Plain text (one choice, `text-delta` parts only) stays on a fast path: one string.
 */
export class ResponseAssembler {
  private text = '';
  private readonly choices = new Map<number, AssembledChoice>();
  private systemFingerprint: unknown = null;

  constructor(private readonly endpoint: Endpoint) {}

  add(part: ContentPart): void {
    if (part.type === 'text-delta') this.appendText(part.text);
    else if (part.type === 'choice-delta') this.addChoice(part.choice);
    // Embeddings parts belong to embeddings responses (embeddings-response.ts), never to choices.
    else if (part.type === 'upstream-chunk')
      for (const event of part.events) {
        if (event.plainText !== undefined) {
          this.appendText(event.plainText);
          continue;
        }
        const chunk = event.chunk;
        if (chunk.system_fingerprint != null) this.systemFingerprint = chunk.system_fingerprint;
        for (const choice of chunk.choices ?? []) this.addChoice(choice);
      }
  }

  /** Choice 0's text, in order with whatever else choice 0 received. */
  private appendText(text: string): void {
    const first = this.choices.get(0);
    if (first === undefined) this.text += text;
    else if (this.endpoint === 'chat.completions')
      first.message.content = (first.message.content ?? '') + text;
    else first.text += text;
  }

  get fingerprint(): unknown {
    return this.systemFingerprint;
  }

  /** The response's `choices`, choice 0's reason defaulting to the engine's finish. */
  build(finishReason: FinishReason): unknown[] {
    const isChat = this.endpoint === 'chat.completions';
    if (this.choices.size === 0 || this.text !== '') {
      const first = this.choice(0);
      if (isChat) first.message.content = this.text + (first.message.content ?? '');
      else first.text = this.text + first.text;
    }
    const built: unknown[] = [];
    for (const index of [...this.choices.keys()].sort((a, b) => a - b)) {
      const choice = this.choices.get(index) as AssembledChoice;
      const reason = choice.finishReason ?? (index === 0 ? finishReason : 'stop');
      if (isChat) {
        const message = choice.message;
        if (choice.toolCalls.length > 0) {
          message.tool_calls = choice.toolCalls.filter((call) => call !== undefined);
          // OpenAI answers a message that only calls tools with `content: null`.
          if (message.content === '') message.content = null;
        }
        built.push({ ...choice.extras, index, message, logprobs: choice.logprobs, finish_reason: reason });
      } else
        built.push({
          ...choice.extras,
          text: choice.text,
          index,
          logprobs: choice.logprobs,
          finish_reason: reason,
        });
    }
    return built;
  }

  private choice(index: number): AssembledChoice {
    let choice = this.choices.get(index);
    if (!choice) {
      choice = {
        message: { role: 'assistant', content: '', refusal: null },
        text: '',
        toolCalls: [],
        logprobs: null,
        finishReason: null,
        extras: null,
      };
      this.choices.set(index, choice);
    }
    return choice;
  }

  private addChoice(wire: WireChunkChoice): void {
    const choice = this.choice(typeof wire.index === 'number' ? wire.index : 0);
    if (typeof wire.text === 'string') choice.text += wire.text;
    if (wire.delta) mergeDelta(choice, wire.delta);
    if (wire.logprobs != null) choice.logprobs = mergeLogprobs(choice.logprobs, wire.logprobs);
    if (wire.finish_reason != null) choice.finishReason = wire.finish_reason;
    for (const key in wire) {
      if (assembledChoiceFields.has(key)) continue;
      choice.extras ??= {};
      choice.extras[key] = wire[key];
    }
  }
}

/** The choice fields assembled above; any other field of a chunk's choice is kept as last sent. */
const assembledChoiceFields = new Set(['index', 'delta', 'text', 'logprobs', 'finish_reason']);

interface AssembledChoice {
  message: Record<string, unknown> & { content: string | null };
  text: string;
  toolCalls: Array<AssembledToolCall | undefined>;
  logprobs: unknown;
  finishReason: string | null;
  /** A choice's fields beyond OpenAI's (vLLM's `stop_reason`), as last sent. */
  extras: Record<string, unknown> | null;
}

interface AssembledToolCall {
  id: string;
  type: string;
  function: { name: string; arguments: string };
  [extra: string]: unknown;
}

function mergeDelta(choice: AssembledChoice, delta: Record<string, unknown>): void {
  const message = choice.message;
  for (const key in delta) {
    const value = delta[key];
    if (key === 'tool_calls') {
      if (Array.isArray(value)) for (const call of value) mergeToolCall(choice, call);
      continue;
    }
    if (key === 'content') {
      if (typeof value === 'string') message.content = (message.content ?? '') + value;
      continue;
    }
    if (value === null || value === undefined) {
      if (!(key in message)) message[key] = value ?? null;
      continue;
    }
    const current = message[key];
    message[key] =
      typeof value === 'string' && typeof current === 'string' && key !== 'role' ? current + value : value;
  }
}

function mergeToolCall(choice: AssembledChoice, raw: unknown): void {
  if (raw === null || typeof raw !== 'object') return;
  const delta = raw as {
    index?: number;
    id?: string;
    type?: string;
    function?: { name?: string; arguments?: string };
    [extra: string]: unknown;
  };
  const index = typeof delta.index === 'number' ? delta.index : choice.toolCalls.length;
  let call = choice.toolCalls[index];
  if (!call) {
    call = { id: '', type: 'function', function: { name: '', arguments: '' } };
    choice.toolCalls[index] = call;
  }
  for (const key in delta) {
    if (key === 'index') continue;
    const value = delta[key];
    if (key === 'function' && value && typeof value === 'object') {
      const fn = value as { name?: string; arguments?: string };
      if (typeof fn.name === 'string') call.function.name += fn.name;
      if (typeof fn.arguments === 'string') call.function.arguments += fn.arguments;
    } else if (typeof value === 'string' && key === 'id') call.id = call.id || value;
    else if (value != null) call[key] = value;
  }
}

/** Logprobs arrive per chunk as objects of arrays (`content`, `refusal`; `tokens`, `token_logprobs` …). */
function mergeLogprobs(current: unknown, next: unknown): unknown {
  if (current === null || typeof current !== 'object' || typeof next !== 'object' || next === null)
    return cloneArrays(next);
  const merged = current as Record<string, unknown>;
  for (const [key, value] of Object.entries(next as Record<string, unknown>)) {
    const existing = merged[key];
    if (Array.isArray(existing) && Array.isArray(value)) existing.push(...value);
    else if (value != null || !(key in merged)) merged[key] = Array.isArray(value) ? [...value] : value;
  }
  return merged;
}

function cloneArrays(value: unknown): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  const copy: Record<string, unknown> = {};
  for (const [key, inner] of Object.entries(value as Record<string, unknown>))
    copy[key] = Array.isArray(inner) ? [...inner] : inner;
  return copy;
}
