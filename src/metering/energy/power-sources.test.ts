import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseReadings } from './nvml-power-source.js';
import { PowerModelSource } from './power-model-source.js';
import { RaplPowerSource } from './rapl-power-source.js';

describe('PowerModelSource', () => {
  it('integrates idle power when unused and interpolates utilisation between readings', () => {
    let utilisation = 0;
    const source = new PowerModelSource({ idleWatts: 10, maxWatts: 110, utilisation: () => utilisation });
    expect(source.energyJoules(0)).toBe(0);
    expect(source.energyJoules(1000)).toBe(10); // 1 s at idle
    utilisation = 1;
    expect(source.energyJoules(2000)).toBe(10 + 60); // mean utilisation 0.5 → 60 W for 1 s
    expect(source.energyJoules(3000)).toBe(70 + 110);
    expect(source.source).toBe('estimated:power-model');
  });

  it('never decreases when read out of order', () => {
    const source = new PowerModelSource({ idleWatts: 5, maxWatts: 5, utilisation: () => 0 });
    source.energyJoules(1000);
    const later = source.energyJoules(2000);
    expect(source.energyJoules(1500)).toBe(later);
  });
});

describe('RaplPowerSource', () => {
  function fakePowercap(energyMicrojoules: number, maxRange = 1_000_000) {
    const root = mkdtempSync(path.join(tmpdir(), 'powercap-'));
    for (const zone of ['intel-rapl:0', 'intel-rapl:0:0']) {
      mkdirSync(path.join(root, zone));
      writeFileSync(path.join(root, zone, 'energy_uj'), String(energyMicrojoules));
      writeFileSync(path.join(root, zone, 'max_energy_range_uj'), String(maxRange));
    }
    return root;
  }

  it('reads package domains only and handles counter wrap-around', () => {
    const root = fakePowercap(900_000);
    const source = RaplPowerSource.detect(root);
    expect(source?.source).toBe('measured:rapl');
    writeFileSync(path.join(root, 'intel-rapl:0', 'energy_uj'), '950000');
    expect(source?.energyJoules()).toBeCloseTo(0.05, 9);
    // Wrapped past max_energy_range_uj: 950000 → 1000000 → 20000 is 70000 µJ.
    writeFileSync(path.join(root, 'intel-rapl:0', 'energy_uj'), '20000');
    expect(source?.energyJoules()).toBeCloseTo(0.12, 9);
  });

  it('is absent where powercap cannot be read', () => {
    expect(RaplPowerSource.detect(path.join(tmpdir(), 'no-such-powercap'))).toBeNull();
  });
});

describe('NVML readings', () => {
  it('parses nvidia-smi CSV lines and skips GPUs without an energy counter', () => {
    expect(parseReadings('0, 123456789\n1, [N/A]\n2, 42\n')).toEqual(
      new Map([
        [0, 123456789],
        [2, 42],
      ]),
    );
  });
});
