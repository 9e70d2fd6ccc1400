/**
 * Prompt sizes before an engine has counted them. Without the model's tokenizer Gravity estimates ~4
 * characters per token, the usual figure for English text with a BPE tokenizer. Admission reserves
 * tokens with it, the scheduler and router weigh requests with it, the upstream adapter reports it when
 * an upstream sends no usage, and the emulated engine counts prompts with it. One rule, so these never
 * disagree about the same prompt.
 */
export const charactersPerToken = 4;

/**
 * Tokens per prefix-cache block: vLLM's default KV block size. The emulated engine caches prompts in
 * blocks of this size and the router indexes the prompts it routed the same way, so a router's prefix hit
 * is an engine's cache hit.
 */
export const prefixBlockTokens = 16;

/** A generation's input, as far as its size goes (chat content parts already joined). */
export type PromptInput =
  | {
      kind: 'completion';
      prompt: string;
      /** Several prompts, or token ids: token ids count as themselves. */
      prompts?: ReadonlyArray<string | readonly number[]> | undefined;
    }
  | {
      /** An embeddings request: each input is its own prompt; token ids count as themselves. */
      kind: 'embedding';
      inputs: ReadonlyArray<string | readonly number[]>;
    }
  | {
      kind: 'chat';
      messages: ReadonlyArray<{
        role?: string;
        content: string;
        /** An assistant turn's tool calls: their names and arguments are prompt tokens too. */
        toolCalls?: ReadonlyArray<{ name: string; arguments: string }> | undefined;
      }>;
    };

/** Estimated tokens of a piece of text. */
export function estimateTextTokens(text: string): number {
  return Math.ceil(text.length / charactersPerToken);
}

/** Estimated prompt tokens of an input: its prompt, or the sum of its messages' contents. */
export function estimateInputTokens(input: PromptInput): number {
  if (input.kind === 'embedding') return estimatePromptListTokens(input.inputs);
  if (input.kind === 'completion')
    return input.prompts ? estimatePromptListTokens(input.prompts) : estimateTextTokens(input.prompt);
  let characters = 0;
  for (const message of input.messages) characters += message.content.length;
  return Math.ceil(characters / charactersPerToken);
}

/** Several prompts (completions' prompt array, embeddings' inputs): text estimated, token ids counted. */
function estimatePromptListTokens(prompts: ReadonlyArray<string | readonly number[]>): number {
  let tokens = 0;
  for (const prompt of prompts)
    tokens += typeof prompt === 'string' ? estimateTextTokens(prompt) : prompt.length;
  return tokens;
}

/** The prompt as one string: a completion's prompt, or the chat messages' contents joined by newlines. */
export function promptText(input: PromptInput): string {
  if (input.kind === 'completion') return input.prompt;
  if (input.kind === 'embedding') return embeddingInputText(input.inputs);
  let text = '';
  for (const [index, message] of input.messages.entries())
    text += index === 0 ? message.content : `\n${message.content}`;
  return text;
}

/**
 * Prompt tokens a chat template adds beyond message text, as far as Gravity can estimate them without
 * the model's template: the tool definitions (as their JSON) and earlier turns' tool calls. Agent
 * requests carry thousands of tokens here that message text alone would miss.
 */
export function estimateTemplatedExtraTokens(request: {
  input: PromptInput;
  options?: { tools: readonly unknown[] } | undefined;
}): number {
  let tokens = 0;
  const tools = request.options?.tools;
  if (tools && tools.length > 0) tokens += estimateTextTokens(JSON.stringify(tools));
  if (request.input.kind === 'chat')
    for (const message of request.input.messages)
      if (message.toolCalls)
        for (const call of message.toolCalls) tokens += estimateTextTokens(call.name + call.arguments);
  return tokens;
}

/** Estimated prompt tokens of a whole request: its input's text plus what its template adds. */
export function estimateRequestTokens(request: {
  input: PromptInput;
  options?: { tools: readonly unknown[] } | undefined;
}): number {
  return estimateInputTokens(request.input) + estimateTemplatedExtraTokens(request);
}

/** An embeddings request's inputs as one string (token ids written out), newline-separated. */
function embeddingInputText(inputs: ReadonlyArray<string | readonly number[]>): string {
  let text = '';
  for (const [index, item] of inputs.entries()) {
    const itemText = typeof item === 'string' ? item : item.join(' ');
    text += index === 0 ? itemText : `\n${itemText}`;
  }
  return text;
}
