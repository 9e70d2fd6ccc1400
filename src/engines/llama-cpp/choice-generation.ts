import { randomBytes } from 'node:crypto';
import {
  type LlamaContextSequence,
  type LlamaGrammar,
  LlamaGrammarEvaluationState,
  type LlamaModel,
  type SequenceEvaluateOptions,
  type Token,
} from 'node-llama-cpp';
import type { ContentPart, FinishReason, WireChunkChoice } from '../../core/stream-parts.js';
import { StopSequenceMatcher } from '../stop-sequence-matcher.js';
import { JsonValueEndScanner, type ToolCallEvent, ToolCallScanner } from './json-stream-scanners.js';
import { chatLogprobs, legacyLogprobs, type TokenLogprob, type TokenLogprobs } from './token-logprobs.js';

/**
 * What a choice's output is:
 * - `text`: free text, cut at stop sequences;
 * - `json`: one JSON value under a grammar; the choice ends when the value closes;
 * - `tool-calls`: a tool-call array under a grammar, streamed as OpenAI tool-call deltas;
 * - `text-or-tool-calls` (tool_choice auto): the first character decides (`[` starts calls).
 */
export type OutputMode = 'text' | 'json' | 'tool-calls' | 'text-or-tool-calls';

export interface ChoiceRun {
  /** The choice's index in the response. */
  index: number;
  model: LlamaModel;
  sequence: LlamaContextSequence;
  /** Prompt tokens not yet in the sequence's KV cache (at least the last one). */
  inputTokens: Token[];
  /** The prompt's last tokens, for detokenizing the first completion tokens (SPM leading spaces). */
  promptTail: Token[];
  maxCompletionTokens: number;
  endpoint: 'chat' | 'completion';
  mode: OutputMode;
  grammar: LlamaGrammar | null;
  /** Stop sequences, applied to text output only: a grammar decides where structured output ends. */
  stop: string[];
  /** Sampling options; `generated` is the choice's completion tokens so far (for penalties). */
  evaluateOptions: (generated: readonly Token[]) => SequenceEvaluateOptions;
  /** Log probabilities to report, with this many alternatives; null: none. */
  logprobs: { top: number; shapes: TokenLogprobs } | null;
  /** Emit `text-delta` parts (choice 0 alone, content only) instead of `choice-delta` parts. */
  textDeltas: boolean;
  signal: AbortSignal;
}

export interface ChoiceOutcome {
  finishReason: FinishReason;
  completionTokens: number;
}

// A UTF-8 character is at most 4 bytes, so at most 4 byte-fallback tokens can form one incomplete character.
const maxIncompleteCharacterTokens = 4;

type Step = { token: Token; probabilities?: Map<Token, number> };

/**
 * Generates one choice on its own sequence and yields its content parts; returns how it finished. The
 * path for requests that use features (structured output, tools, logprobs, several choices); plain text
 * keeps the engine's pipelined loop. Each part's `tokens` counts the tokens it reports, so the parts of a
 * choice add up to its completion tokens.
 */
export async function* generateChoice(run: ChoiceRun): AsyncGenerator<ContentPart, ChoiceOutcome> {
  const { model } = run;
  const generated: Token[] = [];
  const grammarState = run.grammar
    ? new LlamaGrammarEvaluationState({ model, grammar: run.grammar })
    : undefined;
  // `text-or-tool-calls` drops the grammar once the first token chose text: free text needs no grammar.
  let grammarActive = grammarState !== undefined;
  const options: SequenceEvaluateOptions = {
    ...run.evaluateOptions(generated),
    ...(grammarState ? { grammarEvaluationState: () => (grammarActive ? grammarState : undefined) } : {}),
  };
  const steps: AsyncGenerator<Step, void, void> = run.logprobs
    ? run.sequence.evaluateWithMetadata(run.inputTokens, { probabilities: true }, options)
    : run.sequence.evaluateWithMetadata(run.inputTokens, {}, options);

  let mode = run.mode;
  const output = new ChoiceOutput(run);
  const stopMatcher = new StopSequenceMatcher(run.stop);
  const jsonEnd = new JsonValueEndScanner();
  const toolCalls = new ToolCallScanner();
  const pendingTokens: Token[] = [];
  let recentTokens: Token[] = run.promptTail;
  let finishReason: FinishReason | null = null;

  const route = (text: string): void => {
    if (mode === 'text-or-tool-calls' && text !== '') {
      mode = text.startsWith('[') ? 'tool-calls' : 'text';
      if (mode === 'text') grammarActive = false;
    }
    if (mode === 'text') {
      const { emit, stopped } = stopMatcher.push(text);
      output.content(emit);
      if (stopped) finishReason = 'stop';
    } else if (mode === 'json') {
      output.content(text.slice(0, jsonEnd.push(text)));
      if (jsonEnd.complete) finishReason = 'stop';
    } else if (mode === 'tool-calls') {
      output.toolCalls(toolCalls.push(text));
      if (toolCalls.complete) finishReason = 'tool_calls';
    }
  };

  try {
    for await (const step of steps) {
      if (run.signal.aborted) break;
      generated.push(step.token);
      if (run.logprobs && step.probabilities)
        output.logprob(
          run.logprobs.shapes.entry(step.token, step.probabilities, run.logprobs.top, [
            ...recentTokens,
            ...pendingTokens,
          ]),
        );
      pendingTokens.push(step.token);
      const text = model.detokenize(pendingTokens, false, recentTokens);
      const incomplete = text.endsWith('\uFFFD') && pendingTokens.length < maxIncompleteCharacterTokens;
      const lastAllowed = generated.length >= run.maxCompletionTokens;
      if (!incomplete || lastAllowed) {
        recentTokens = pendingTokens.splice(0);
        route(text);
      }
      output.tokens(1);
      const part = output.take();
      if (part) yield part;
      if (finishReason) break;
      if (lastAllowed) {
        finishReason = 'length';
        break;
      }
    }
  } finally {
    // Waits for a step in flight, so the sequence is idle before its slot is released.
    await steps.return(undefined);
  }
  if (run.signal.aborted) throw run.signal.reason;
  if (finishReason === null) {
    // The model ended the output (end of generation).
    if (mode === 'text') output.content(stopMatcher.flush());
    finishReason = mode === 'tool-calls' && toolCalls.calls > 0 ? 'tool_calls' : 'stop';
  }
  const last = output.finish(finishReason);
  if (last) yield last;
  return { finishReason, completionTokens: generated.length };
}

/** Collects one choice's output between parts and builds the parts in the endpoint's wire shape. */
class ChoiceOutput {
  private text = '';
  private calls: Array<Record<string, unknown>> = [];
  private logprobs: TokenLogprob[] = [];
  private unreportedTokens = 0;
  private opened = false;
  /** Characters of text already sent, for the legacy logprobs' `text_offset`. */
  private textOffset = 0;

  constructor(private readonly run: ChoiceRun) {}

  content(text: string): void {
    this.text += text;
  }

  toolCalls(events: readonly ToolCallEvent[]): void {
    for (const event of events) {
      this.calls.push(
        event.kind === 'call'
          ? {
              index: event.index,
              id: toolCallId(),
              type: 'function',
              function: { name: event.name, arguments: '' },
            }
          : { index: event.index, function: { arguments: event.text } },
      );
    }
  }

  logprob(entry: TokenLogprob): void {
    this.logprobs.push(entry);
  }

  tokens(count: number): void {
    this.unreportedTokens += count;
  }

  /** The part for what was collected since the last one, or null when there is nothing to show yet. */
  take(): ContentPart | null {
    if (this.text === '' && this.calls.length === 0) return null;
    return this.part(null);
  }

  /** The choice's last part: what is left, with its finish reason (unless the finish part carries it). */
  finish(reason: FinishReason): ContentPart | null {
    if (this.run.textDeltas) {
      if (this.text === '' && this.unreportedTokens === 0) return null;
      return this.part(null);
    }
    return this.part(reason);
  }

  private part(finishReason: FinishReason | null): ContentPart {
    const tokens = this.unreportedTokens;
    this.unreportedTokens = 0;
    const text = this.text;
    this.text = '';
    if (this.run.textDeltas) return { type: 'text-delta', text, tokens };
    const logprobs = this.logprobs;
    this.logprobs = [];
    let choice: WireChunkChoice;
    if (this.run.endpoint === 'completion') {
      choice = {
        index: this.run.index,
        text,
        logprobs: this.run.logprobs ? legacyLogprobs(logprobs, this.textOffset) : null,
        finish_reason: finishReason,
      };
      this.textOffset += text.length;
    } else {
      const delta: Record<string, unknown> = {};
      if (!this.opened) delta.role = 'assistant';
      if (text !== '' || this.calls.length === 0) delta.content = text;
      if (this.calls.length > 0) delta.tool_calls = this.calls;
      this.calls = [];
      if (finishReason !== null && text === '' && this.opened) delete delta.content;
      choice = {
        index: this.run.index,
        delta,
        logprobs: this.run.logprobs ? chatLogprobs(logprobs) : null,
        finish_reason: finishReason,
      };
    }
    this.opened = true;
    return { type: 'choice-delta', choice, tokens };
  }
}

/** OpenAI-style call ids: `call_` and 24 random characters. */
function toolCallId(): string {
  return `call_${randomBytes(18).toString('base64url').slice(0, 24)}`;
}
