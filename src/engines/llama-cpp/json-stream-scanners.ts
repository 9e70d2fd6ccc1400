/**
 * Incremental scanners over grammar-constrained JSON text as the model writes it, chunk by chunk. The
 * grammar guarantees the text is valid JSON of the expected shape, so the scanners track only what they
 * need (nesting, strings, escapes) and never backtrack.
 */

/**
 * Finds where one top-level JSON object, array or string ends, so the engine can finish the choice at
 * once instead of waiting for the model to pick end-of-generation (a random model may never). A bare
 * number or literal has no closing character: its end is the grammar's, which then allows only
 * end-of-generation.
 */
export class JsonValueEndScanner {
  private depth = 0;
  private inString = false;
  private escaped = false;
  private started = false;
  private ended = false;

  get complete(): boolean {
    return this.ended;
  }

  /** How many characters of `text` belong to the value (all of them while it is still open). */
  push(text: string): number {
    if (this.ended) return 0;
    for (let index = 0; index < text.length; index++) {
      const char = text[index];
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (char === '\\') this.escaped = true;
        else if (char === '"') {
          this.inString = false;
          if (this.depth === 0) return this.end(index);
        }
        continue;
      }
      if (char === '"') {
        this.inString = true;
        this.started = true;
      } else if (char === '{' || char === '[') {
        this.depth++;
        this.started = true;
      } else if (char === '}' || char === ']') {
        this.depth--;
        if (this.depth === 0 && this.started) return this.end(index);
      }
    }
    return text.length;
  }

  private end(index: number): number {
    this.ended = true;
    return index + 1;
  }
}

export type ToolCallEvent =
  /** A call's name is complete: the first delta of the call. */
  | { kind: 'call'; index: number; name: string }
  /** More of a call's arguments (JSON text, as written). */
  | { kind: 'arguments'; index: number; text: string };

/**
 * Reads a tool-call array `[{"name": "…", "arguments": {…}}, …]` as it streams and reports each call's
 * name once it is complete and its arguments' JSON text as it arrives. The grammar writes `name` before
 * `arguments` (properties in schema order), so a call's name is always known before its arguments.
 */
export class ToolCallScanner {
  private depth = 0;
  private inString = false;
  private escaped = false;
  private callIndex = -1;
  /** Inside a call object (depth 2): the next string is a key. */
  private expectingKey = false;
  private currentKey = '';
  private keyText: string | null = null;
  private nameText: string | null = null;
  /** Capturing the arguments value; `argumentsStarted` once its first character arrived. */
  private capturingArguments = false;
  private argumentsStarted = false;
  private ended = false;

  /** The array is closed: nothing the model writes after it is a call. */
  get complete(): boolean {
    return this.ended;
  }

  get calls(): number {
    return this.callIndex + 1;
  }

  push(text: string): ToolCallEvent[] {
    const events: ToolCallEvent[] = [];
    let argumentsText = '';
    const flushArguments = () => {
      if (argumentsText !== '')
        events.push({ kind: 'arguments', index: this.callIndex, text: argumentsText });
      argumentsText = '';
    };
    for (let position = 0; position < text.length && !this.ended; position++) {
      const char = text[position] as string;
      if (this.inString) {
        if (this.capturingArguments) argumentsText += char;
        else if (this.keyText !== null) this.keyText += char;
        else if (this.nameText !== null) this.nameText += char;
        if (this.escaped) {
          this.escaped = false;
          continue;
        }
        if (char === '\\') this.escaped = true;
        else if (char === '"') {
          this.inString = false;
          if (this.keyText !== null) {
            this.currentKey = JSON.parse(`"${this.keyText}`) as string;
            this.keyText = null;
          } else if (this.nameText !== null) {
            const name = JSON.parse(`"${this.nameText}`) as string;
            this.nameText = null;
            events.push({ kind: 'call', index: this.callIndex, name });
          } else if (this.capturingArguments && this.depth === 2) this.endArguments();
        }
        continue;
      }
      const whitespace = char === ' ' || char === '\n' || char === '\t' || char === '\r';
      if (this.capturingArguments && !whitespace) this.argumentsStarted = true;
      if (char === '{' || char === '[') {
        if (this.capturingArguments) argumentsText += char;
        this.depth++;
        if (this.depth === 2 && !this.capturingArguments) {
          this.callIndex++;
          this.expectingKey = true;
        }
      } else if (char === '}' || char === ']') {
        if (this.capturingArguments && this.depth > 2) argumentsText += char;
        else if (this.capturingArguments) this.endArguments();
        this.depth--;
        if (this.capturingArguments && this.depth === 2) this.endArguments();
        if (this.depth === 0) this.ended = true;
      } else if (char === '"') {
        this.inString = true;
        if (this.capturingArguments) argumentsText += char;
        else if (this.depth === 2 && this.expectingKey) this.keyText = '';
        else if (this.depth === 2 && this.currentKey === 'name') this.nameText = '';
      } else if (this.depth === 2 && !this.capturingArguments && char === ':') {
        this.expectingKey = false;
        if (this.currentKey === 'arguments') {
          this.capturingArguments = true;
          this.argumentsStarted = false;
        }
      } else if (this.depth === 2 && char === ',') {
        if (this.capturingArguments) this.endArguments();
        this.expectingKey = true;
      } else if (this.capturingArguments && (this.argumentsStarted || !whitespace)) {
        // Inside the value, or a bare number or literal; whitespace before the value is not part of it.
        if (!(whitespace && this.depth === 2)) argumentsText += char;
      }
      if (!this.capturingArguments) flushArguments();
    }
    flushArguments();
    return mergeArguments(events);
  }

  private endArguments(): void {
    this.capturingArguments = false;
    this.argumentsStarted = false;
    this.currentKey = '';
  }
}

/** One arguments event per call per chunk: consecutive pieces of the same call are joined. */
function mergeArguments(events: ToolCallEvent[]): ToolCallEvent[] {
  const merged: ToolCallEvent[] = [];
  for (const event of events) {
    const last = merged[merged.length - 1];
    if (event.kind === 'arguments' && last?.kind === 'arguments' && last.index === event.index)
      last.text += event.text;
    else merged.push(event);
  }
  return merged;
}
