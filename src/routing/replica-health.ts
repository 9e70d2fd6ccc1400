/**
 * Health of each replica from two sources: passive outlier detection (consecutive failed attempts eject a
 * replica for a back-off that doubles on each re-ejection) and active checks (a failed probe ejects at
 * once; a passed probe readmits). After its back-off an ejected replica is half-open: one request may try
 * it, and its outcome closes or re-opens the circuit. Time comes from the caller (a Clock reading).
 */
export interface ReplicaHealthOptions {
  consecutiveFailures: number;
  ejectionMs: number;
  maxEjectionMs: number;
}

type CircuitState = 'closed' | 'open' | 'half-open';

interface ReplicaCircuit {
  state: CircuitState;
  consecutiveFailures: number;
  ejections: number;
  ejectedUntilMs: number;
  /** Half-open: a probe request is in flight, others stay away. */
  probing: boolean;
  /** Set by active checks: down until a probe passes. */
  probeFailed: boolean;
  /** Open on another gateway's word (`onPeerEjection`), not on failures seen here. */
  ejectedByPeer: boolean;
  lastError: string | null;
}

/** An ejection or readmission this process decided, for a driver that shares them with other gateways. */
export type ReplicaHealthChange =
  | { kind: 'ejected'; replica: string; ejectedForMs: number; error: string | null }
  | { kind: 'readmitted'; replica: string };

export interface ReplicaHealthSnapshot {
  replica: string;
  state: CircuitState;
  consecutiveFailures: number;
  ejections: number;
  ejectedForMs: number;
  /** Ejected on another gateway's word (shared state), not on failures this gateway saw. */
  ejectedByPeer: boolean;
  lastError: string | null;
}

export class ReplicaHealth {
  private readonly circuits = new Map<string, ReplicaCircuit>();
  /**
   * Told of each ejection and readmission decided here (never of a peer's): the live gateway shares them
   * through Redis. Null in the simulator and with one gateway.
   */
  onChange: ((change: ReplicaHealthChange) => void) | null = null;

  constructor(private readonly options: ReplicaHealthOptions) {}

  private circuit(replica: string): ReplicaCircuit {
    let circuit = this.circuits.get(replica);
    if (!circuit) {
      circuit = {
        state: 'closed',
        consecutiveFailures: 0,
        ejections: 0,
        ejectedUntilMs: 0,
        probing: false,
        probeFailed: false,
        ejectedByPeer: false,
        lastError: null,
      };
      this.circuits.set(replica, circuit);
    }
    return circuit;
  }

  /** Forgets a replica that left the fleet, so a new one under the same id starts with a clean record. */
  forget(replica: string): void {
    this.circuits.delete(replica);
  }

  /** Whether routing may send the replica a request now. */
  isAvailable(replica: string, nowMs: number): boolean {
    const circuit = this.circuits.get(replica);
    if (!circuit) return true;
    if (circuit.probeFailed) return false;
    if (circuit.state === 'closed') return true;
    if (circuit.state === 'open' && nowMs >= circuit.ejectedUntilMs) circuit.state = 'half-open';
    return circuit.state === 'half-open' && !circuit.probing;
  }

  /** A request was sent to the replica (a half-open replica now has its probe). */
  onAttempt(replica: string): void {
    const circuit = this.circuits.get(replica);
    if (circuit?.state === 'half-open') circuit.probing = true;
  }

  onSuccess(replica: string): void {
    const circuit = this.circuits.get(replica);
    if (!circuit) return;
    circuit.consecutiveFailures = 0;
    circuit.probing = false;
    if (circuit.state !== 'closed') {
      circuit.state = 'closed';
      circuit.ejections = 0;
      circuit.ejectedByPeer = false;
      this.onChange?.({ kind: 'readmitted', replica });
    }
  }

  /**
   * An attempt ended without saying anything about the replica (the client left, the request itself was
   * refused): a half-open replica's trial is over, and the next request may be its trial.
   */
  onUnjudged(replica: string): void {
    const circuit = this.circuits.get(replica);
    if (circuit) circuit.probing = false;
  }

  onFailure(replica: string, nowMs: number, error: string): void {
    const circuit = this.circuit(replica);
    circuit.consecutiveFailures++;
    circuit.lastError = error;
    const reopen = circuit.state === 'half-open';
    circuit.probing = false;
    if (reopen || circuit.consecutiveFailures >= this.options.consecutiveFailures)
      this.eject(replica, circuit, nowMs);
  }

  /** An active check's result. */
  onProbe(replica: string, nowMs: number, error: string | null): void {
    const circuit = this.circuit(replica);
    if (error === null) {
      if (circuit.probeFailed) {
        circuit.probeFailed = false;
        circuit.consecutiveFailures = 0;
        circuit.state = 'closed';
        circuit.ejectedByPeer = false;
        this.onChange?.({ kind: 'readmitted', replica });
      }
      return;
    }
    circuit.lastError = error;
    if (!circuit.probeFailed) {
      circuit.probeFailed = true;
      this.eject(replica, circuit, nowMs);
    }
  }

  /**
   * Another gateway ejected the replica for `ejectedForMs` more: stay away as long, without sending it
   * failing requests of our own. The ejection ends by its own timer here (then a local half-open trial);
   * it adds nothing to the local back-off, and a longer local ejection or a failed probe is kept.
   */
  onPeerEjection(replica: string, nowMs: number, ejectedForMs: number, error: string | null): void {
    const circuit = this.circuit(replica);
    const untilMs = nowMs + ejectedForMs;
    if (circuit.probeFailed || (circuit.state === 'open' && circuit.ejectedUntilMs >= untilMs)) return;
    circuit.state = 'open';
    circuit.ejectedUntilMs = untilMs;
    circuit.probing = false;
    circuit.ejectedByPeer = true;
    circuit.lastError = error;
  }

  /**
   * Another gateway readmitted the replica (a trial or a probe passed there): a circuit opened on a
   * peer's word closes; one opened by failures seen here keeps its own timer and trial.
   */
  onPeerReadmission(replica: string): void {
    const circuit = this.circuits.get(replica);
    if (!circuit?.ejectedByPeer || circuit.state === 'closed' || circuit.probeFailed) return;
    circuit.state = 'closed';
    circuit.ejectedByPeer = false;
    circuit.consecutiveFailures = 0;
    circuit.probing = false;
  }

  snapshot(nowMs: number): ReplicaHealthSnapshot[] {
    return [...this.circuits].map(([replica, circuit]) => ({
      replica,
      state: circuit.probeFailed ? 'open' : circuit.state,
      consecutiveFailures: circuit.consecutiveFailures,
      ejections: circuit.ejections,
      ejectedForMs: Math.max(0, circuit.ejectedUntilMs - nowMs),
      ejectedByPeer: circuit.ejectedByPeer && circuit.state !== 'closed',
      lastError: circuit.lastError,
    }));
  }

  private eject(replica: string, circuit: ReplicaCircuit, nowMs: number): void {
    const { ejectionMs, maxEjectionMs } = this.options;
    const ejectedForMs = Math.min(maxEjectionMs, ejectionMs * 2 ** circuit.ejections);
    circuit.state = 'open';
    circuit.ejectedUntilMs = nowMs + ejectedForMs;
    circuit.ejections++;
    circuit.consecutiveFailures = 0;
    circuit.ejectedByPeer = false;
    this.onChange?.({ kind: 'ejected', replica, ejectedForMs, error: circuit.lastError });
  }
}
