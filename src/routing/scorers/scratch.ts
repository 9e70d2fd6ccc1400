/** A reusable Float64Array that grows to the largest fleet seen, so scoring allocates nothing per request. */
export class Scratch {
  private buffer = new Float64Array(16);

  get(length: number): Float64Array {
    if (this.buffer.length < length) this.buffer = new Float64Array(Math.max(length, this.buffer.length * 2));
    return this.buffer;
  }
}
