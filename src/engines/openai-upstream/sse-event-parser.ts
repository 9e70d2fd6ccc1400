/**
 * Incremental parser for `text/event-stream` bodies: feed it bytes as they arrive, get back the `data`
 * payloads of complete events. Follows the WHATWG rules that matter for OpenAI-style streams: events end
 * at a blank line, `\r\n` and `\n` both end lines, `:` lines are comments, several `data:` lines join
 * with `\n`.
 */
export class SseEventParser {
  private readonly decoder = new TextDecoder();
  private buffered = '';
  private dataLines: string[] = [];

  push(bytes: Uint8Array): string[] {
    this.buffered += this.decoder.decode(bytes, { stream: true });
    const events: string[] = [];
    let lineStart = 0;
    for (;;) {
      const newline = this.buffered.indexOf('\n', lineStart);
      if (newline === -1) break;
      let line = this.buffered.slice(lineStart, newline);
      if (line.endsWith('\r')) line = line.slice(0, -1);
      lineStart = newline + 1;
      if (line.length === 0) {
        if (this.dataLines.length > 0) events.push(this.dataLines.join('\n'));
        this.dataLines = [];
      } else if (line.startsWith('data:')) {
        this.dataLines.push(line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5));
      }
      // Other fields (event:, id:, retry:) and comments carry nothing OpenAI streams need.
    }
    this.buffered = this.buffered.slice(lineStart);
    return events;
  }

  /** Returns a final event that the stream ended without its blank line, if any. */
  end(): string[] {
    const tail = this.push(new Uint8Array());
    if (this.buffered.startsWith('data:')) this.dataLines.push(this.buffered.replace(/^data: ?/, ''));
    this.buffered = '';
    if (this.dataLines.length > 0) tail.push(this.dataLines.join('\n'));
    this.dataLines = [];
    return tail;
  }
}
