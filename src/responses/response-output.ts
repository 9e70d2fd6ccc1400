import type { ContentPart, WireChunkChoice } from '../core/stream-parts.js';

/**
 * Turns an engine's content parts (whatever their kind) into the Responses API's output items, in the
 * order they arrive: choice 0's text becomes a `message` item with one `output_text` part, each chat
 * tool call a `function_call` item. Items are sequential, as OpenAI streams them: a new item closes the
 * one before it.
 *
 * `events`, when given, receives the streamed events as they happen (output_item.added,
 * content_part.added, output_text.delta …, without `sequence_number`, which the encoder adds); a
 * non-streamed response passes none and reads `items()` at the end.
 */
export interface OutputEvents {
  /** Hot path: one call per token of text; `logprobs` only when the request asked for them. */
  textDelta(itemId: string, outputIndex: number, delta: string, logprobs?: readonly unknown[]): void;
  event(event: Record<string, unknown>): void;
}

export type OutputItem = MessageItem | FunctionCallItem;

interface MessageItem {
  id: string;
  type: 'message';
  status: 'in_progress' | 'completed' | 'incomplete';
  role: 'assistant';
  content: Array<{ type: 'output_text'; text: string; annotations: unknown[]; logprobs: unknown[] }>;
}

interface FunctionCallItem {
  id: string;
  type: 'function_call';
  status: 'in_progress' | 'completed' | 'incomplete';
  call_id: string;
  name: string;
  arguments: string;
}

export class ResponseOutputBuilder {
  private readonly output: OutputItem[] = [];
  /** The open item; text of the open message accumulates in `text`, not in the item, until it closes. */
  private open: OutputItem | null = null;
  private text = '';
  /** The open message's token logprobs (`include: ["message.output_text.logprobs"]`). */
  private logprobs: unknown[] = [];
  /** Chat tool-call index → its function_call item (deltas after the first carry only the index). */
  private readonly toolCalls = new Map<number, FunctionCallItem>();

  constructor(
    private readonly responseId: string,
    private readonly events: OutputEvents | null,
  ) {}

  add(part: ContentPart): void {
    if (part.type === 'text-delta') {
      if (part.text !== '') this.appendText(part.text);
      return;
    }
    if (part.type === 'choice-delta') {
      this.addChoice(part.choice);
      return;
    }
    // Embeddings parts belong to /v1/embeddings; a Responses request never gets one.
    if (part.type === 'embeddings') return;
    for (const event of part.events) {
      if (event.plainText !== undefined) {
        if (event.plainText !== '') this.appendText(event.plainText);
        continue;
      }
      for (const choice of event.chunk.choices ?? []) this.addChoice(choice);
    }
  }

  /** Closes the open item; returns every item. `completed` false marks the last item incomplete. */
  finish(completed: boolean): OutputItem[] {
    // A response always has a message, even an empty one, unless it called tools.
    if (this.output.length === 0) this.openMessage();
    this.closeOpen(completed ? 'completed' : 'incomplete');
    return this.output;
  }

  /**
   * The items so far, for a response that failed mid-stream. The open message holds its text in the
   * builder until it closes, so it appears as a snapshot: the text and logprobs the client already got
   * as deltas, status `incomplete`. The builder is left as it was.
   */
  items(): OutputItem[] {
    const open = this.open;
    if (open === null || open.type !== 'message') return this.output;
    const snapshot: MessageItem = {
      ...open,
      status: 'incomplete',
      content: [{ type: 'output_text', annotations: [], logprobs: [...this.logprobs], text: this.text }],
    };
    return this.output.map((item) => (item === open ? snapshot : item));
  }

  private addChoice(choice: WireChunkChoice): void {
    // The Responses API has one output sequence; other choices (n > 1) cannot be asked for here.
    if ((choice.index ?? 0) !== 0) return;
    const delta = choice.delta;
    if (typeof choice.text === 'string' && choice.text !== '') this.appendText(choice.text);
    if (!delta) return;
    const content = delta.content;
    if (typeof content === 'string' && content !== '') {
      // Chat's token logprobs ({token, logprob, bytes, top_logprobs}) are the Responses API's as well.
      const tokenLogprobs = (choice.logprobs as { content?: unknown } | null | undefined)?.content;
      this.appendText(content, Array.isArray(tokenLogprobs) ? tokenLogprobs : undefined);
    }
    const calls = delta.tool_calls;
    if (Array.isArray(calls)) for (const call of calls) this.addToolCall(call);
  }

  // Hot path: once per token.
  private appendText(text: string, logprobs?: readonly unknown[]): void {
    let message = this.open;
    if (message === null || message.type !== 'message') message = this.openMessage();
    this.text += text;
    if (logprobs !== undefined) this.logprobs.push(...logprobs);
    this.events?.textDelta(message.id, this.output.length - 1, text, logprobs);
  }

  private openMessage(): MessageItem {
    this.closeOpen('completed');
    const message: MessageItem = {
      id: `msg_${this.responseId.slice('resp_'.length)}${this.output.length === 0 ? '' : `_${this.output.length}`}`,
      type: 'message',
      status: 'in_progress',
      role: 'assistant',
      content: [],
    };
    this.output.push(message);
    this.open = message;
    this.text = '';
    this.logprobs = [];
    if (this.events) {
      const outputIndex = this.output.length - 1;
      this.events.event({
        type: 'response.output_item.added',
        output_index: outputIndex,
        item: { ...message, content: [] },
      });
      this.events.event({
        type: 'response.content_part.added',
        item_id: message.id,
        output_index: outputIndex,
        content_index: 0,
        part: { type: 'output_text', annotations: [], logprobs: [], text: '' },
      });
    }
    return message;
  }

  private addToolCall(raw: unknown): void {
    if (raw === null || typeof raw !== 'object') return;
    const delta = raw as { index?: number; id?: string; function?: { name?: string; arguments?: string } };
    const index = typeof delta.index === 'number' ? delta.index : this.toolCalls.size;
    let item = this.toolCalls.get(index);
    if (!item) {
      this.closeOpen('completed');
      item = {
        id: `fc_${this.responseId.slice('resp_'.length)}_${this.output.length}`,
        type: 'function_call',
        status: 'in_progress',
        call_id: delta.id ?? `call_${this.responseId.slice('resp_'.length)}_${index}`,
        name: delta.function?.name ?? '',
        arguments: '',
      };
      this.toolCalls.set(index, item);
      this.output.push(item);
      this.open = item;
      this.events?.event({
        type: 'response.output_item.added',
        output_index: this.output.length - 1,
        item: { ...item },
      });
    } else if (typeof delta.function?.name === 'string' && item.name === '') item.name = delta.function.name;
    const args = delta.function?.arguments;
    if (typeof args === 'string' && args !== '') {
      item.arguments += args;
      this.events?.event({
        type: 'response.function_call_arguments.delta',
        item_id: item.id,
        output_index: this.output.indexOf(item),
        delta: args,
      });
    }
  }

  private closeOpen(status: 'completed' | 'incomplete'): void {
    const item = this.open;
    if (item === null) return;
    this.open = null;
    item.status = status;
    const outputIndex = this.output.indexOf(item);
    if (item.type === 'message') {
      const part = {
        type: 'output_text' as const,
        annotations: [],
        logprobs: this.logprobs,
        text: this.text,
      };
      item.content = [part];
      this.text = '';
      this.logprobs = [];
      if (this.events) {
        this.events.event({
          type: 'response.output_text.done',
          item_id: item.id,
          output_index: outputIndex,
          content_index: 0,
          text: part.text,
          logprobs: part.logprobs,
        });
        this.events.event({
          type: 'response.content_part.done',
          item_id: item.id,
          output_index: outputIndex,
          content_index: 0,
          part,
        });
      }
    } else
      this.events?.event({
        type: 'response.function_call_arguments.done',
        item_id: item.id,
        output_index: outputIndex,
        name: item.name,
        arguments: item.arguments,
      });
    this.events?.event({ type: 'response.output_item.done', output_index: outputIndex, item });
  }
}
