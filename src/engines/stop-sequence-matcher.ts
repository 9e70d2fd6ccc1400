/**
 * Cuts generated text at the first stop sequence, across token boundaries. Text that might be the start
 * of a stop sequence is held back until it is known not to be one, so a client never sees part of a
 * stop string. Engines that apply `stop` themselves (upstreams) do not need this.
 */
export class StopSequenceMatcher {
  private readonly stops: string[];
  private readonly longestStopLength: number;
  private pending = '';

  constructor(stops: readonly string[]) {
    this.stops = stops.filter((stop) => stop.length > 0);
    this.longestStopLength = this.stops.reduce((longest, stop) => Math.max(longest, stop.length), 0);
  }

  /** Feeds new text; returns what may be sent now and whether a stop sequence ended the output. */
  push(text: string): { emit: string; stopped: boolean } {
    // Fast path: no stop sequences means no buffering at all.
    if (this.longestStopLength === 0) return { emit: text, stopped: false };
    const buffer = this.pending + text;
    let firstStopAt = -1;
    for (const stop of this.stops) {
      const at = buffer.indexOf(stop);
      if (at !== -1 && (firstStopAt === -1 || at < firstStopAt)) firstStopAt = at;
    }
    if (firstStopAt !== -1) {
      this.pending = '';
      return { emit: buffer.slice(0, firstStopAt), stopped: true };
    }
    const holdFrom = this.holdBackStart(buffer);
    this.pending = buffer.slice(holdFrom);
    return { emit: buffer.slice(0, holdFrom), stopped: false };
  }

  /** The text still held back; call when generation ends without a stop. */
  flush(): string {
    const rest = this.pending;
    this.pending = '';
    return rest;
  }

  /** Index of the earliest suffix of `buffer` that is a proper prefix of some stop sequence. */
  private holdBackStart(buffer: string): number {
    const earliest = Math.max(0, buffer.length - this.longestStopLength + 1);
    for (let start = earliest; start < buffer.length; start++) {
      const suffix = buffer.slice(start);
      if (this.stops.some((stop) => stop.startsWith(suffix))) return start;
    }
    return buffer.length;
  }
}
