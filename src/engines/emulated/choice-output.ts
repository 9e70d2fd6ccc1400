import { charactersPerToken, estimateTextTokens } from '../../core/prompt-size.js';
import type { SeededRandom } from '../../core/seeded-random.js';
import type { ContentPart, FinishReason, WireChunkChoice } from '../../core/stream-parts.js';
import type { SyntheticLogprobs } from './synthetic-logprobs.js';
import type { SyntheticText } from './synthetic-text.js';

/**
 * What one choice of an emulated generation says, token by token. The step loop knows only how many
 * tokens each sequence gained; a ChoiceOutput turns them into content parts whose `tokens` add up to
 * `tokens`, the completion tokens the performance model decodes for the choice.
 */
export interface ChoiceOutput {
  /** Completion tokens of the choice: what the replica model decodes, and what usage reports. */
  readonly tokens: number;
  readonly finishReason: FinishReason;
  /**
   * Whether its parts carry its finish_reason (choice-deltas); otherwise (text-deltas of choice 0) the
   * renderer writes it from the finish part.
   */
  readonly carriesFinishReason: boolean;
  /**
   * Hot path, once per step per sequence: `fresh` more tokens were generated. Pushes the parts they
   * complete; once all `tokens` are in, every part has been pushed.
   */
  emit(fresh: number, sink: PartSink): void;
}

/** Where a choice's parts go: its generation's queue, read by the client's iterator. */
export interface PartSink {
  push(part: ContentPart): void;
}

/** Plain text of choice 0 without logprobs: one text-delta per step, the fast path of plain chat. */
export class PlainTextOutput implements ChoiceOutput {
  readonly carriesFinishReason = false;

  constructor(
    private readonly text: SyntheticText,
    readonly tokens: number,
    readonly finishReason: FinishReason,
  ) {}

  emit(fresh: number, sink: PartSink): void {
    sink.push({ type: 'text-delta', text: this.text.take(fresh), tokens: fresh });
  }
}

/** Which wire shape a choice-delta takes: chat's `delta`, or the completions API's `text`. */
export type ChoiceShape = 'chat' | 'completion';

/**
 * Synthetic words in `choice-delta` parts: another choice than 0 (n > 1, several prompts), logprobs, or
 * a completions `echo` prefix. One word per token, as PlainTextOutput.
 */
export class WordsOutput implements ChoiceOutput {
  readonly carriesFinishReason = true;
  private emitted = 0;
  private textOffset = 0;

  constructor(
    private readonly options: {
      index: number;
      shape: ChoiceShape;
      text: SyntheticText;
      logprobs: SyntheticLogprobs | null;
      /** Text before the first token (the prompt, for completions' `echo`); not a completion token. */
      prefix: string;
    },
    readonly tokens: number,
    readonly finishReason: FinishReason,
  ) {
    this.textOffset = options.prefix.length;
  }

  emit(fresh: number, sink: PartSink): void {
    const { index, shape, text, logprobs, prefix } = this.options;
    const words: string[] = [];
    for (let token = 0; token < fresh; token++) words.push(text.take(1));
    const content = (this.emitted === 0 ? prefix : '') + words.join('');
    const first = this.emitted === 0;
    this.emitted += fresh;
    const finish = this.emitted >= this.tokens ? this.finishReason : null;
    let wireLogprobs: unknown = null;
    if (logprobs) {
      if (shape === 'chat')
        wireLogprobs = { content: words.map((word) => logprobs.chatEntry(word)), refusal: null };
      else {
        const entries = words.map((word) => logprobs.completionEntry(word));
        const offsets: number[] = [];
        for (const word of words) {
          offsets.push(this.textOffset);
          this.textOffset += word.length;
        }
        wireLogprobs = {
          tokens: words,
          token_logprobs: entries.map((entry) => entry.logprob),
          top_logprobs: entries.map((entry) => entry.top),
          text_offset: offsets,
        };
      }
    }
    sink.push({
      type: 'choice-delta',
      choice: wireChoice(shape, index, content, first, wireLogprobs, finish),
      tokens: fresh,
    });
  }
}

function wireChoice(
  shape: ChoiceShape,
  index: number,
  content: string,
  first: boolean,
  logprobs: unknown,
  finishReason: FinishReason | null,
): WireChunkChoice {
  if (shape === 'completion') return { text: content, index, logprobs, finish_reason: finishReason };
  // Each choice's first delta names the role, as OpenAI's streams do for n > 1.
  const delta = first ? { role: 'assistant', content } : { content };
  return { index, delta, logprobs, finish_reason: finishReason };
}

/** A tool call the emulated model writes: its arguments are JSON text that parses. */
export interface PlannedToolCall {
  id: string;
  name: string;
  arguments: string;
}

/**
 * Output known in full before it starts (JSON content, tool calls), split into the parts a streaming
 * server sends, each with the tokens it stands for:
 * - text (JSON) costs a token per four characters, the prompt-size rule (core/prompt-size.ts), and goes
 *   out four characters per token;
 * - a tool call's header (id, type, name) goes out once the name's tokens are written, as a server's
 *   tool-call parser sends it once it has read the name, then its arguments four characters per token.
 * A budget (max_tokens, or the room left in the context) cuts the output where it runs out, and the
 * finish reason becomes `length`, as a real engine's would, JSON unfinished.
 */
export class ScriptedOutput implements ChoiceOutput {
  readonly tokens: number;
  readonly finishReason: FinishReason;
  readonly carriesFinishReason: boolean;
  private readonly parts: ContentPart[];
  /** Tokens generated when each part is complete. */
  private readonly partEnds: number[];
  private generated = 0;
  private next = 0;

  constructor(script: Script) {
    this.parts = script.parts;
    this.partEnds = script.partEnds;
    this.tokens = script.tokens;
    this.finishReason = script.finishReason;
    this.carriesFinishReason = script.parts.at(-1)?.type === 'choice-delta';
  }

  emit(fresh: number, sink: PartSink): void {
    this.generated += fresh;
    while (this.next < this.parts.length && (this.partEnds[this.next] as number) <= this.generated)
      sink.push(this.parts[this.next++] as ContentPart);
  }
}

export interface Script {
  parts: ContentPart[];
  partEnds: number[];
  tokens: number;
  finishReason: FinishReason;
}

/**
 * Builds a ScriptedOutput's parts. `asTextDeltas`: content goes out as text-delta parts (choice 0, no
 * logprobs: the same path as plain text, the renderer adds the finish chunk); otherwise as choice-delta
 * parts, the last of which carries the finish reason.
 */
export class ScriptBuilder {
  private readonly parts: ContentPart[] = [];
  private readonly partEnds: number[] = [];
  private tokens = 0;
  private truncated = false;
  private first = true;

  constructor(
    private readonly options: {
      index: number;
      shape: ChoiceShape;
      asTextDeltas: boolean;
      logprobs: SyntheticLogprobs | null;
      /** Tokens the choice may take. */
      budgetTokens: number;
    },
  ) {}

  /** Content text, four characters per token. */
  text(text: string): this {
    const { index, shape, asTextDeltas, logprobs } = this.options;
    for (let start = 0; start < text.length && this.take(1); start += charactersPerToken) {
      const piece = text.slice(start, start + charactersPerToken);
      if (asTextDeltas) this.add({ type: 'text-delta', text: piece, tokens: 1 });
      else {
        const entry = logprobs
          ? shape === 'chat'
            ? { content: [logprobs.chatEntry(piece)], refusal: null }
            : completionLogprobs(logprobs, piece, start)
          : null;
        this.add({
          type: 'choice-delta',
          choice: wireChoice(shape, index, piece, this.first, entry, null),
          tokens: 1,
        });
        this.first = false;
      }
    }
    return this;
  }

  /** One tool call: its header once the name is written, then its arguments. */
  toolCall(callIndex: number, call: PlannedToolCall): this {
    const { index } = this.options;
    const nameTokens = Math.max(1, estimateTextTokens(call.name));
    const headerTokens = Math.min(nameTokens, this.budgetLeft());
    if (headerTokens === 0) {
      this.truncated = true;
      return this;
    }
    this.tokens += headerTokens;
    if (headerTokens < nameTokens) this.truncated = true;
    const header = {
      index: callIndex,
      id: call.id,
      type: 'function',
      function: { name: call.name, arguments: '' },
    };
    const delta: Record<string, unknown> = this.first
      ? { role: 'assistant', content: null, tool_calls: [header] }
      : { tool_calls: [header] };
    this.first = false;
    this.add({
      type: 'choice-delta',
      choice: { index, delta, logprobs: null, finish_reason: null },
      tokens: headerTokens,
    });
    for (let start = 0; start < call.arguments.length && this.take(1); start += charactersPerToken) {
      const piece = call.arguments.slice(start, start + charactersPerToken);
      this.add({
        type: 'choice-delta',
        choice: {
          index,
          delta: { tool_calls: [{ index: callIndex, function: { arguments: piece } }] },
          logprobs: null,
          finish_reason: null,
        },
        tokens: 1,
      });
    }
    return this;
  }

  /** The script, its finish reason `natural` unless the budget cut it (`length`). */
  build(natural: FinishReason): Script {
    const finishReason = this.truncated ? 'length' : natural;
    const last = this.parts.at(-1);
    if (last?.type === 'choice-delta') last.choice.finish_reason = finishReason;
    return { parts: this.parts, partEnds: this.partEnds, tokens: this.tokens, finishReason };
  }

  private budgetLeft(): number {
    return Math.max(0, this.options.budgetTokens - this.tokens);
  }

  /** Spends `tokens` of the budget, or marks the output cut. */
  private take(tokens: number): boolean {
    if (this.budgetLeft() < tokens) {
      this.truncated = true;
      return false;
    }
    this.tokens += tokens;
    return true;
  }

  private add(part: ContentPart): void {
    this.parts.push(part);
    this.partEnds.push(this.tokens);
  }
}

function completionLogprobs(logprobs: SyntheticLogprobs, piece: string, offset: number) {
  const entry = logprobs.completionEntry(piece);
  return {
    tokens: [piece],
    token_logprobs: [entry.logprob],
    top_logprobs: [entry.top],
    text_offset: [offset],
  };
}

/** An OpenAI-style tool-call id (`call_` and 24 letters or digits), drawn from the choice's generator. */
export function toolCallId(random: SeededRandom): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  let id = 'call_';
  for (let index = 0; index < 24; index++) id += alphabet[random.integer(0, alphabet.length - 1)];
  return id;
}
