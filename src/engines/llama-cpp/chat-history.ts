import type { ChatHistoryItem } from 'node-llama-cpp';
import type { ChatMessage, ToolChoice, ToolDefinition } from '../engine-adapter.js';

/**
 * A chat request as node-llama-cpp's chat history, for the model's chat template.
 *
 * Tools are rendered as text, in the same format the tool-call grammar makes the model write: the tool
 * list and the calling convention go into the system message, an assistant message's tool calls become
 * the JSON array it would have written, and a tool result becomes a user turn naming the call it
 * answers. node-llama-cpp's own function-calling syntax (`availableFunctions`, `functionCall` items) is
 * not used because each chat wrapper renders calls in its own syntax, which would contradict the JSON
 * array the grammar enforces.
 */
export function chatHistory(
  messages: readonly ChatMessage[],
  tools: readonly ToolDefinition[],
  toolChoice: ToolChoice,
): ChatHistoryItem[] {
  const history: ChatHistoryItem[] = [];
  const toolNames = new Map<string, string>();
  for (const message of messages) {
    if (message.role === 'assistant') {
      const response: string[] = [];
      if (message.content !== '') response.push(message.content);
      if (message.toolCalls && message.toolCalls.length > 0) {
        for (const call of message.toolCalls) toolNames.set(call.id, call.name);
        response.push(toolCallsText(message.toolCalls));
      }
      history.push({ type: 'model', response: [response.join('\n')] });
    } else if (message.role === 'tool') {
      const name = message.name ?? toolNames.get(message.toolCallId ?? '') ?? 'tool';
      const call = message.toolCallId ? ` (call ${message.toolCallId})` : '';
      history.push({ type: 'user', text: `Result of ${name}${call}:\n${message.content}` });
    } else if (message.role === 'user') history.push({ type: 'user', text: message.content });
    else history.push({ type: 'system', text: message.content });
  }
  if (tools.length > 0 && toolChoice !== 'none') {
    const instructions = toolInstructions(tools);
    const first = history[0];
    if (first?.type === 'system' && typeof first.text === 'string')
      history[0] = { type: 'system', text: `${first.text}\n\n${instructions}` };
    else history.unshift({ type: 'system', text: instructions });
  }
  history.push({ type: 'model', response: [] });
  return history;
}

function toolCallsText(calls: NonNullable<ChatMessage['toolCalls']>): string {
  // The arguments are the JSON text the model wrote; anything else is passed on as a string.
  const items = calls.map(
    (call) => `{"name": ${JSON.stringify(call.name)}, "arguments": ${jsonOrString(call.arguments)}}`,
  );
  return `[${items.join(', ')}]`;
}

function jsonOrString(text: string): string {
  try {
    JSON.parse(text);
    return text;
  } catch {
    return JSON.stringify(text);
  }
}

function toolInstructions(tools: readonly ToolDefinition[]): string {
  const lines = tools.map((tool) => {
    const description = tool.description ? `: ${tool.description}` : '';
    const parameters = tool.parameters ? ` Parameters (JSON Schema): ${JSON.stringify(tool.parameters)}` : '';
    return `- ${tool.name}${description}.${parameters}`;
  });
  return [
    'You can call these tools:',
    ...lines,
    'To call tools, answer with only a JSON array of calls: [{"name": "<tool name>", "arguments": {<arguments>}}].',
  ].join('\n');
}
