import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { PowerSource } from './power-source.js';

const powercapRoot = '/sys/class/powercap';

interface RaplDomain {
  energyFile: string;
  maxRangeMicrojoules: number;
  lastMicrojoules: number;
}

/**
 * Measured CPU package energy from Linux RAPL (`/sys/class/powercap/intel-rapl:N/energy_uj`; AMD CPUs
 * expose the same interface). Counts the whole package, so on a shared host it includes other processes'
 * draw: the figure is the machine's, attributed to Gravity's requests by their work. Counters wrap at
 * `max_energy_range_uj`, which this handles.
 */
export class RaplPowerSource implements PowerSource {
  readonly source = 'measured:rapl' as const;
  private totalMicrojoules = 0;

  private constructor(private readonly domains: RaplDomain[]) {}

  /** Returns a source when at least one package domain is readable, else null (containers, VMs). */
  static detect(root = powercapRoot): RaplPowerSource | null {
    let entries: string[];
    try {
      entries = readdirSync(root);
    } catch {
      return null;
    }
    const domains: RaplDomain[] = [];
    // Top-level package domains only (intel-rapl:0), not their sub-zones (intel-rapl:0:0), which they include.
    for (const entry of entries.filter((name) => /^intel-rapl:\d+$/.test(name))) {
      try {
        const energyFile = path.join(root, entry, 'energy_uj');
        const lastMicrojoules = Number(readFileSync(energyFile, 'utf8'));
        const maxRangeMicrojoules = Number(
          readFileSync(path.join(root, entry, 'max_energy_range_uj'), 'utf8'),
        );
        if (Number.isFinite(lastMicrojoules) && maxRangeMicrojoules > 0) {
          domains.push({ energyFile, lastMicrojoules, maxRangeMicrojoules });
        }
      } catch {
        // Unreadable without privileges on most kernels since 2020 (CVE-2020-8694): skip.
      }
    }
    return domains.length > 0 ? new RaplPowerSource(domains) : null;
  }

  energyJoules(): number {
    for (const domain of this.domains) {
      const now = Number(readFileSync(domain.energyFile, 'utf8'));
      const delta =
        now >= domain.lastMicrojoules
          ? now - domain.lastMicrojoules
          : now + domain.maxRangeMicrojoules - domain.lastMicrojoules;
      domain.lastMicrojoules = now;
      this.totalMicrojoules += delta;
    }
    return this.totalMicrojoules / 1e6;
  }

  close(): void {}
}
