/**
 * A fixed set of execution slots with a FIFO of waiters: a request that finds every slot busy waits for
 * one instead of failing. A waiter whose signal aborts leaves the queue at once. The choice among free
 * slots is the caller's (`pick`), so an engine can prefer the slot whose cache already holds the prompt.
 */
export class SlotPool<Slot> {
  private readonly free: Slot[];
  private readonly waiters: Array<{ resolve: (slot: Slot) => void }> = [];
  readonly size: number;

  constructor(slots: Slot[]) {
    this.free = [...slots];
    this.size = slots.length;
  }

  get busy(): number {
    return this.size - this.free.length;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  /**
   * Resolves with a slot once one is free. `pick` chooses among the free slots (index into the array it
   * is given); it is only consulted when no one is waiting ahead, keeping the queue FIFO.
   */
  acquire(signal: AbortSignal, pick: (free: readonly Slot[]) => number = () => 0): Promise<Slot> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (this.free.length > 0 && this.waiters.length === 0) {
      const index = Math.min(Math.max(pick(this.free), 0), this.free.length - 1);
      const [slot] = this.free.splice(index, 1);
      return Promise.resolve(slot as Slot);
    }
    return new Promise<Slot>((resolve, reject) => {
      const waiter = {
        resolve: (slot: Slot) => {
          signal.removeEventListener('abort', onAbort);
          resolve(slot);
        },
      };
      const onAbort = () => {
        const at = this.waiters.indexOf(waiter);
        if (at !== -1) this.waiters.splice(at, 1);
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** Returns a slot; must be called exactly once per successful `acquire`, even on error. */
  release(slot: Slot): void {
    const next = this.waiters.shift();
    if (next) next.resolve(slot);
    else this.free.push(slot);
  }
}
