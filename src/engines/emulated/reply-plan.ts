import { errors } from '../../core/errors.js';
import { SeededRandom } from '../../core/seeded-random.js';
import type { FinishReason } from '../../core/stream-parts.js';
import type { GenerationOptions, GenerationRequest, ToolDefinition } from '../engine-adapter.js';
import {
  type ChoiceOutput,
  type ChoiceShape,
  PlainTextOutput,
  ScriptBuilder,
  ScriptedOutput,
  toolCallId,
  WordsOutput,
} from './choice-output.js';
import { SchemaGenerationError, syntheticJsonObject, syntheticJsonValue } from './synthetic-json.js';
import { SyntheticLogprobs } from './synthetic-logprobs.js';
import { drawAnswerTokens, SyntheticText } from './synthetic-text.js';

/**
 * What the emulated model answers, decided before the first token so that its length (and so its cost)
 * is known to the performance model. Deterministic rules a client can rely on in tests (the README
 * states them):
 * - tools with `tool_choice` a named function → one call to it; `required` → a call to every tool when
 *   parallel tool calls are on (the default), to the first tool otherwise; `auto` → one call to the first
 *   tool, unless the last message is a `tool` result, which gets a text answer (so an agent loop does one
 *   round trip); `none` → text;
 * - a text answer is synthetic words, or JSON when `response_format` asks for it (`json_object`: a small
 *   object; `json_schema`: a value that validates against the schema);
 * - arguments are JSON that validates against the tool's `parameters`.
 */
export function plannedToolCalls(request: GenerationRequest, options: GenerationOptions): ToolDefinition[] {
  const { tools, toolChoice } = options;
  if (tools.length === 0 || toolChoice === 'none') return [];
  if (typeof toolChoice === 'object')
    return tools.filter((tool) => tool.name === toolChoice.name).slice(0, 1);
  if (toolChoice === 'required') return options.parallelToolCalls ? tools : tools.slice(0, 1);
  const messages = request.input.kind === 'chat' ? request.input.messages : [];
  return messages.at(-1)?.role === 'tool' ? [] : tools.slice(0, 1);
}

/** The arguments schema of a tool that declares none: an empty object. */
const noParameters = { type: 'object', properties: {}, additionalProperties: false };

export interface ChoicePlan {
  request: GenerationRequest;
  options: GenerationOptions;
  /** The choice's index in the response. */
  index: number;
  shape: ChoiceShape;
  /** The seed of the choice's draws (words, lengths, JSON values, logprobs). */
  seed: number;
  /** Tokens left in the context after the choice's prompt: the most the answer may take. */
  roomTokens: number;
  /** Text before the answer (completions' `echo`), not counted as completion tokens. */
  echoPrefix: string;
}

/** One choice's output, its length and finish reason decided. Throws a 400 for a schema it cannot follow. */
export function planChoiceOutput(plan: ChoicePlan): ChoiceOutput {
  const { request, options, index, shape, roomTokens } = plan;
  const random = new SeededRandom(plan.seed);
  const logprobs = options.logprobs
    ? new SyntheticLogprobs(new SeededRandom(plan.seed ^ 0x5eed), options.topLogprobs)
    : null;
  const calls = plannedToolCalls(request, options);
  const format = options.responseFormat;
  if (calls.length > 0 || format.type !== 'text') {
    const builder = new ScriptBuilder({
      index,
      shape,
      // Choice 0's JSON without logprobs takes plain chat's path; tool calls need choice-deltas.
      asTextDeltas: index === 0 && logprobs === null && calls.length === 0,
      logprobs,
      budgetTokens: Math.min(request.maxTokens ?? roomTokens, roomTokens),
    });
    if (calls.length > 0) {
      calls.forEach((tool, callIndex) => {
        const value = syntheticValue(
          tool.parameters ?? noParameters,
          random,
          `tools[].function.parameters (${tool.name})`,
        );
        builder.toolCall(callIndex, {
          id: toolCallId(random),
          name: tool.name,
          arguments: JSON.stringify(value),
        });
      });
      return new ScriptedOutput(builder.build('tool_calls'));
    }
    const value =
      format.type === 'json_object'
        ? syntheticJsonObject(random)
        : syntheticValue(format.type === 'json_schema' ? format.schema : {}, random, 'response_format');
    return new ScriptedOutput(builder.text(JSON.stringify(value)).build('stop'));
  }
  // Synthetic words. The draws come in the order plain chat has always made them (length, then words),
  // so a request's answer does not change with the features around it.
  let tokens: number;
  let finishReason: FinishReason;
  if (request.maxTokens !== null) {
    // The emulated model always talks until it is cut off.
    tokens = Math.min(request.maxTokens, roomTokens);
    finishReason = 'length';
  } else {
    const drawn = drawAnswerTokens(random);
    tokens = Math.min(drawn, roomTokens);
    finishReason = drawn > roomTokens ? 'length' : 'stop';
  }
  tokens = Math.max(1, tokens);
  const text = new SyntheticText(random);
  if (index === 0 && logprobs === null && plan.echoPrefix === '')
    return new PlainTextOutput(text, tokens, finishReason);
  return new WordsOutput({ index, shape, text, logprobs, prefix: plan.echoPrefix }, tokens, finishReason);
}

function syntheticValue(schema: unknown, random: SeededRandom, param: string): unknown {
  try {
    return syntheticJsonValue(schema, random);
  } catch (error) {
    if (!(error instanceof SchemaGenerationError)) throw error;
    throw errors.invalidRequest(
      `Invalid schema in '${param}': ${error.message}.`,
      param.split(' ')[0] ?? param,
      'invalid_schema',
    );
  }
}
