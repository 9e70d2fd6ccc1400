import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { PowerSource } from './power-source.js';

/**
 * Measured GPU energy from NVML's total-energy counter (millijoules since the driver loaded, Volta and
 * newer), read through `nvidia-smi` in loop mode: one long-lived process prints every GPU's counter
 * every `pollMs`, so a reading costs nothing on the request path. Energy between polls shows up at the
 * next poll; intervals shorter than `pollMs` see it late but never lose it.
 */
export class NvmlPowerSource implements PowerSource {
  readonly source = 'measured:nvml' as const;
  private readonly firstMillijoules = new Map<number, number>();
  private readonly latestMillijoules = new Map<number, number>();
  private readonly child: ChildProcess;

  private constructor(
    private readonly gpuIndices: number[],
    pollMs: number,
    command: string,
  ) {
    this.child = spawn(
      command,
      ['--query-gpu=index,total_energy_consumption', '--format=csv,noheader,nounits', `-lms=${pollMs}`],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    this.child.unref();
    const lines = createInterface({ input: this.child.stdout as NodeJS.ReadableStream });
    lines.on('line', (line) => this.ingest(line));
  }

  /** Returns a source when `nvidia-smi` answers with an energy counter for every requested GPU, else null. */
  static detect(options: {
    gpuIndices: number[];
    pollMs?: number;
    command?: string;
  }): NvmlPowerSource | null {
    const command = options.command ?? 'nvidia-smi';
    try {
      const output = execFileSync(
        command,
        ['--query-gpu=index,total_energy_consumption', '--format=csv,noheader,nounits'],
        {
          encoding: 'utf8',
          timeout: 5000,
          stdio: ['ignore', 'pipe', 'ignore'],
        },
      );
      const readings = parseReadings(output);
      if (!options.gpuIndices.every((index) => readings.has(index))) return null;
      const source = new NvmlPowerSource(options.gpuIndices, options.pollMs ?? 100, command);
      for (const [index, millijoules] of readings) {
        source.firstMillijoules.set(index, millijoules);
        source.latestMillijoules.set(index, millijoules);
      }
      return source;
    } catch {
      return null;
    }
  }

  private ingest(line: string): void {
    for (const [index, millijoules] of parseReadings(line)) {
      if (!this.firstMillijoules.has(index)) this.firstMillijoules.set(index, millijoules);
      this.latestMillijoules.set(index, millijoules);
    }
  }

  energyJoules(): number {
    let millijoules = 0;
    for (const index of this.gpuIndices) {
      millijoules += (this.latestMillijoules.get(index) ?? 0) - (this.firstMillijoules.get(index) ?? 0);
    }
    return millijoules / 1000;
  }

  close(): void {
    this.child.kill();
  }
}

/** Parses `index, millijoules` lines; GPUs without the counter print `[N/A]` and are skipped. */
export function parseReadings(text: string): Map<number, number> {
  const readings = new Map<number, number>();
  for (const line of text.split('\n')) {
    const [index, value] = line.split(',').map((field) => field.trim());
    const millijoules = Number(value);
    if (index !== undefined && index !== '' && Number.isFinite(millijoules) && value !== '') {
      readings.set(Number(index), millijoules);
    }
  }
  return readings;
}
