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
  lastError: string | null;
}

export interface ReplicaHealthSnapshot {
  replica: string;
  state: CircuitState;
  consecutiveFailures: number;
  ejections: number;
  ejectedForMs: number;
  lastError: string | null;
}

export class ReplicaHealth {
  private readonly circuits = new Map<string, ReplicaCircuit>();

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
        lastError: null,
      };
      this.circuits.set(replica, circuit);
    }
    return circuit;
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
    if (reopen || circuit.consecutiveFailures >= this.options.consecutiveFailures) this.eject(circuit, nowMs);
  }

  /** An active check's result. */
  onProbe(replica: string, nowMs: number, error: string | null): void {
    const circuit = this.circuit(replica);
    if (error === null) {
      if (circuit.probeFailed) {
        circuit.probeFailed = false;
        circuit.consecutiveFailures = 0;
        circuit.state = 'closed';
      }
      return;
    }
    circuit.lastError = error;
    if (!circuit.probeFailed) {
      circuit.probeFailed = true;
      this.eject(circuit, nowMs);
    }
  }

  snapshot(nowMs: number): ReplicaHealthSnapshot[] {
    return [...this.circuits].map(([replica, circuit]) => ({
      replica,
      state: circuit.probeFailed ? 'open' : circuit.state,
      consecutiveFailures: circuit.consecutiveFailures,
      ejections: circuit.ejections,
      ejectedForMs: Math.max(0, circuit.ejectedUntilMs - nowMs),
      lastError: circuit.lastError,
    }));
  }

  private eject(circuit: ReplicaCircuit, nowMs: number): void {
    const { ejectionMs, maxEjectionMs } = this.options;
    circuit.state = 'open';
    circuit.ejectedUntilMs = nowMs + Math.min(maxEjectionMs, ejectionMs * 2 ** circuit.ejections);
    circuit.ejections++;
    circuit.consecutiveFailures = 0;
  }
}
