import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { EngineAdapter, ModelledPower } from '../../engines/engine-adapter.js';
import { engineConfigSchema, engineHardware } from '../../engines/engine-registry.js';
import { hardwarePowerProfiles } from './hardware-power-profiles.js';
import { parseReadings } from './nvml-power-source.js';
import { PerformanceModelPowerSource } from './performance-model-power-source.js';
import { PowerModelSource } from './power-model-source.js';
import { RaplPowerSource } from './rapl-power-source.js';
import { selectPowerSource } from './select-power-source.js';

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

describe('PerformanceModelPowerSource', () => {
  it('adds idle power since the first reading to the modelled dynamic energy, never decreasing', () => {
    let dynamicJoules = 0;
    const source = new PerformanceModelPowerSource({
      idleWatts: 75,
      dynamicEnergyJoules: () => dynamicJoules,
    });
    expect(source.energyJoules(1000)).toBe(0);
    expect(source.energyJoules(3000)).toBe(150); // 2 s idle at 75 W
    dynamicJoules = 40;
    expect(source.energyJoules(4000)).toBe(225 + 40);
    expect(source.energyJoules(3500)).toBe(265);
    expect(source.source).toBe('estimated:performance-model');
  });

  it('is what selectPowerSource picks for an engine that models its power, under auto and power-model', () => {
    const modelledPower: ModelledPower = { idleWatts: 75, dynamicEnergyJoules: () => 0 };
    const engine = {
      id: 'e',
      extensions: { modelledPower },
      load: () => ({ slotsTotal: 1, slotsBusy: 0, waiting: 0 }),
    };
    for (const source of ['auto', 'power-model'] as const) {
      const config = engineConfigSchema.parse({
        type: 'emulated',
        hardware: 'h100-sxm',
        model: 'llama-3.1-8b',
        metering: { energy: { source } },
      });
      const selected = selectPowerSource({
        engine: engine as unknown as EngineAdapter,
        hardware: engineHardware(config),
        energy: config.metering.energy,
        cpuEnginesOnHost: 0,
      });
      expect(selected.source).toBe('estimated:performance-model');
    }
  });
});

describe('selectPowerSource with the declared power model', () => {
  const idleEngine = {
    id: 'e',
    load: () => ({ slotsTotal: 4, slotsBusy: 0, waiting: 0 }),
  } as unknown as EngineAdapter;
  // Idle for one second: the energy is the idle power the engine's hardware description implies.
  function idleWattsOf(document: Record<string, unknown>): number {
    const config = engineConfigSchema.parse({
      ...document,
      metering: { energy: { source: 'power-model' } },
    });
    const source = selectPowerSource({
      engine: idleEngine,
      hardware: engineHardware(config),
      energy: config.metering.energy,
      cpuEnginesOnHost: 1,
    });
    source.energyJoules(0);
    return source.energyJoules(1000);
  }

  it('models an in-process llama.cpp engine as one CPU core per thread', () => {
    const document = { type: 'llama-cpp', model: { generated: 'gravity-tiny' }, threads: 4 };
    expect(idleWattsOf(document)).toBeCloseTo(4 * hardwarePowerProfiles['cpu-core'].idleWatts);
  });

  it('models a remote upstream as one H100 SXM unless told otherwise', () => {
    const document = { type: 'openai-upstream', baseUrl: 'http://127.0.0.1:8000/v1' };
    expect(idleWattsOf(document)).toBeCloseTo(hardwarePowerProfiles['h100-sxm'].idleWatts);
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
