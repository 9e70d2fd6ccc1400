import type { EngineAdapter } from '../../engines/engine-adapter.js';
import type { EngineHardware } from '../../engines/engine-definition.js';
import type { EngineMeteringConfig } from '../../engines/engine-metering-config.js';
import { type HardwareProfileName, hardwarePowerProfiles } from './hardware-power-profiles.js';
import { NvmlPowerSource } from './nvml-power-source.js';
import { PerformanceModelPowerSource } from './performance-model-power-source.js';
import { PowerModelSource } from './power-model-source.js';
import type { PowerSource } from './power-source.js';
import { RaplPowerSource } from './rapl-power-source.js';

/**
 * Picks each engine's energy source. `auto` prefers what the engine knows or the host can measure: an
 * engine that models its own device (extensions.modelledPower) reports that model's energy; an engine on
 * this host's CPU reads RAPL when the host exposes it, but only when it is the only such engine, since
 * RAPL measures the whole package; anything else gets the declared power model, with the defaults of the
 * engine's hardware description (a remote upstream: one H100 SXM). `nvml` and `rapl` asked for
 * explicitly fail at start when unavailable, rather than silently estimating.
 */
export function selectPowerSource(options: {
  engine: EngineAdapter;
  /** From the engine's definition (EngineDefinition.hardware). */
  hardware: EngineHardware;
  energy: EngineMeteringConfig['energy'];
  /** Engines whose work runs on this host's CPU package, this one included. */
  cpuEnginesOnHost: number;
}): PowerSource {
  const { engine, hardware, energy } = options;
  const requested = energy.source;
  if (requested === 'nvml') {
    const source = NvmlPowerSource.detect({ gpuIndices: energy.gpuIndices });
    if (!source)
      throw new Error(
        `engines.${engine.id}.metering.energy.source is nvml, but nvidia-smi reports no energy counter for GPUs ${energy.gpuIndices.join(', ')}`,
      );
    return source;
  }
  const modelledPower = engine.extensions?.modelledPower;
  if ((requested === 'auto' || requested === 'power-model') && modelledPower)
    return new PerformanceModelPowerSource(modelledPower);
  const onHostCpu = hardware.processor === 'cpu' && hardware.onThisHost;
  if (requested === 'rapl' || (requested === 'auto' && onHostCpu && options.cpuEnginesOnHost === 1)) {
    const source = RaplPowerSource.detect();
    if (source) return source;
    if (requested === 'rapl')
      throw new Error(
        `engines.${engine.id}.metering.energy.source is rapl, but /sys/class/powercap is not readable here`,
      );
  }

  const profileName: HardwareProfileName = energy.hardware ?? hardware.powerModel.hardware;
  const profile = hardwarePowerProfiles[profileName];
  const count = energy.count ?? hardware.powerModel.count;
  const saturationRequests = energy.saturationRequests ?? hardware.powerModel.saturationRequests;
  return new PowerModelSource({
    idleWatts: energy.idleWatts ?? profile.idleWatts * count,
    maxWatts: energy.maxWatts ?? profile.maxWatts * count,
    utilisation: () => {
      const load = engine.load();
      return load.slotsBusy / Math.min(saturationRequests, Math.max(1, load.slotsTotal));
    },
  });
}
