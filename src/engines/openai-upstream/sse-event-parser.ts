import { errors } from '../../core/errors.js';

/**
 * The largest event an upstream may send, in characters of its text (data lines and any line not yet
 * ended). OpenAI-style token chunks are a few hundred characters; the largest legitimate event is a
 * Responses stream's `response.completed`, which repeats the whole output (a 128k-token answer is well
 * under 1 MB). Beyond this the stream is broken or hostile, and holding it would grow Gravity's memory.
 */
export const maxUpstreamEventChars = 8 * 1024 * 1024;

/**
 * Incremental parser for `text/event-stream` bodies: feed it bytes as they arrive, get back the `data`
 * payloads of complete events. Follows the WHATWG rules that matter for OpenAI-style streams: events end
 * at a blank line, `\r\n` and `\n` both end lines, `:` lines are comments, several `data:` lines join
 * with `\n`.
 *
 * Linear in the bytes it is fed, whatever their shape: each read is scanned once, and a line that spans
 * reads waits as a list of pieces joined once when its newline arrives (appending to one string and
 * rescanning it made a 20 MB line cost seconds). An event larger than `maxEventChars` fails the stream
 * with `upstream_error` as soon as it grows past the bound.
 */
export class SseEventParser {
  private readonly decoder = new TextDecoder();
  /** The current line's text from earlier reads (no newline in it yet). */
  private partialLine: string[] = [];
  private partialLineChars = 0;
  private dataLines: string[] = [];
  /** Characters of the data lines of the event being assembled. */
  private eventChars = 0;

  constructor(
    /** Who sends the stream, for the error (`upstream 'vllm-0'`). */
    private readonly source = 'upstream',
    private readonly maxEventChars = maxUpstreamEventChars,
  ) {}

  push(bytes: Uint8Array): string[] {
    const text = this.decoder.decode(bytes, { stream: true });
    const events: string[] = [];
    let lineStart = 0;
    for (;;) {
      const newline = text.indexOf('\n', lineStart);
      if (newline === -1) break;
      let line = text.slice(lineStart, newline);
      lineStart = newline + 1;
      if (this.partialLine.length > 0) {
        this.partialLine.push(line);
        line = this.partialLine.join('');
        this.partialLine = [];
        this.partialLineChars = 0;
      }
      this.takeLine(line, events);
    }
    if (lineStart < text.length) {
      const rest = text.slice(lineStart);
      this.partialLine.push(rest);
      this.partialLineChars += rest.length;
      this.checkSize(this.partialLineChars);
    }
    return events;
  }

  /** Returns a final event that the stream ended without its blank line, if any. */
  end(): string[] {
    const tail = this.push(new Uint8Array());
    const last = this.partialLine.join('');
    this.partialLine = [];
    this.partialLineChars = 0;
    if (last.startsWith('data:')) this.dataLines.push(dataOf(last));
    if (this.dataLines.length > 0) tail.push(this.dataLines.join('\n'));
    this.dataLines = [];
    this.eventChars = 0;
    return tail;
  }

  private takeLine(text: string, events: string[]): void {
    const line = text.endsWith('\r') ? text.slice(0, -1) : text;
    if (line.length === 0) {
      if (this.dataLines.length > 0) events.push(this.dataLines.join('\n'));
      this.dataLines = [];
      this.eventChars = 0;
    } else if (line.startsWith('data:')) {
      const data = dataOf(line);
      this.eventChars += data.length;
      this.checkSize(0);
      this.dataLines.push(data);
    }
    // Other fields (event:, id:, retry:) and comments carry nothing OpenAI streams need.
  }

  /** Fails the stream once the event being assembled, with `pending` characters of an open line, is too large. */
  private checkSize(pending: number): void {
    if (this.eventChars + pending <= this.maxEventChars) return;
    throw errors.upstream({
      status: 502,
      message: `${this.source} sent an event larger than ${this.maxEventChars} characters; the stream was dropped.`,
    });
  }
}

function dataOf(line: string): string {
  return line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5);
}
