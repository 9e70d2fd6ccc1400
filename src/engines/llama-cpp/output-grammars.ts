import type { Llama, LlamaGrammar } from 'node-llama-cpp';
import type { ResponseFormat, ToolChoice, ToolDefinition } from '../engine-adapter.js';
import { type JsonSchemaObject, toGrammarSchema } from './json-schema-subset.js';

/**
 * The GBNF grammars that constrain structured output: a JSON value for `response_format`, and the
 * tool-call array `[{"name": …, "arguments": …}]` for tools. Grammars are built from node-llama-cpp's
 * JSON-schema generator, with two corrections:
 * - its root ends in four newlines and then any number more (its chat session treats the newlines as a
 *   stop trigger). Here the root ends with the value, so once the value is complete the grammar allows
 *   only end-of-generation, and the engine also ends a choice as soon as its value closes;
 * - its numbers take exponents of up to 16 digits, which parse to Infinity (and an integer's negative
 *   exponent to a fraction). Numbers here have no exponent and at most 15 integer digits, so every
 *   number is finite, every integer is an integer, and all lie strictly within ±10^15
 *   (json-schema-subset.ts accepts bounds no tighter than that, such as the safe-integer bounds zod
 *   writes for `.int()`).
 */

const libraryRootSuffix = ' "\\n\\n\\n\\n" [\\n]*';
const libraryExponent = ' ([eE] [-+]? ("0" | [1-9] [0-9]{0,15}))?';
const libraryIntegerDigits = '[1-9] [0-9]{0,15}';
const integerDigits = '[1-9] [0-9]{0,14}';

/** GBNF for one JSON value valid against `schema` (already in the grammar subset), root rule `root`. */
export async function jsonValueGrammarText(llama: Llama, schema: JsonSchemaObject): Promise<string> {
  // The library's types describe its schema subset statically; the schema here was checked at run time.
  const generated = (await llama.createGrammarForJsonSchema(schema as never)).grammar;
  return generated
    .split('\n')
    .map((line) => {
      if (line.startsWith('root ::= ') && line.endsWith(libraryRootSuffix))
        return line.slice(0, -libraryRootSuffix.length);
      if (line.startsWith('integer-number-rule ::= ') || line.startsWith('fractional-number-rule ::= '))
        return line.replace(libraryExponent, '').replace(libraryIntegerDigits, integerDigits);
      return line;
    })
    .join('\n');
}

/** The grammar for a response format other than text. */
export async function responseFormatGrammar(
  llama: Llama,
  format: Exclude<ResponseFormat, { type: 'text' }>,
): Promise<LlamaGrammar> {
  const schema: JsonSchemaObject =
    format.type === 'json_object'
      ? // Any JSON object: what llama.cpp's json.gbnf allows, with this module's finite numbers.
        { type: 'object', additionalProperties: true }
      : toGrammarSchema(format.schema, 'response_format');
  return llama.createGrammar({ grammar: await jsonValueGrammarText(llama, schema) });
}

/**
 * The JSON Schema of a tool-call array: each item names one of the tools (`const`) and gives arguments
 * valid against that tool's parameters. One call at most when parallel calls are off or a tool is
 * forced; at least one (the grammar is used only when calls are required or chosen). Already in the
 * grammar subset: each tool's parameters are checked (a 400 naming `tools` when one cannot be enforced).
 */
export function toolCallsSchema(
  tools: readonly ToolDefinition[],
  toolChoice: ToolChoice,
  parallelToolCalls: boolean,
): JsonSchemaObject {
  const callable =
    typeof toolChoice === 'object' ? tools.filter((tool) => tool.name === toolChoice.name) : tools;
  const calls = callable.map(
    (tool): JsonSchemaObject => ({
      type: 'object',
      properties: {
        name: { const: tool.name },
        // No parameters schema: any JSON object, as OpenAI reads a function without one.
        arguments: toGrammarSchema(
          tool.parameters ?? { type: 'object', additionalProperties: true },
          'tools',
        ),
      },
      required: ['name', 'arguments'],
    }),
  );
  const single = typeof toolChoice === 'object' || !parallelToolCalls;
  return {
    type: 'array',
    items: calls.length === 1 ? calls[0] : { oneOf: calls },
    minItems: 1,
    ...(single ? { maxItems: 1 } : {}),
  };
}

/**
 * The grammar for a request with tools. `required` and a named tool: only a call array. `auto`: either a
 * call array or free text, decided by the first character (`[` starts calls); after a first text token
 * the engine drops the grammar, so text costs nothing extra.
 */
export async function toolCallGrammar(
  llama: Llama,
  tools: readonly ToolDefinition[],
  toolChoice: Exclude<ToolChoice, 'none'>,
  parallelToolCalls: boolean,
): Promise<LlamaGrammar> {
  const calls = await jsonValueGrammarText(llama, toolCallsSchema(tools, toolChoice, parallelToolCalls));
  if (toolChoice !== 'auto') return llama.createGrammar({ grammar: calls });
  const grammar = [
    'root ::= tool-calls | free-text',
    'free-text ::= [^\\[] [^\\x00]*',
    calls.replace(/^root ::= /, 'tool-calls ::= '),
  ].join('\n');
  return llama.createGrammar({ grammar });
}
