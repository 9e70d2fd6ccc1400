import type { EngineConfig } from '../../config/config-schema.js';
import type { EngineAdapter } from '../../engines/engine-adapter.js';
import { type HardwareProfileName, hardwarePowerProfiles } from './hardware-power-profiles.js';
import { NvmlPowerSource } from './nvml-power-source.js';
import { PerformanceModelPowerSource } from './performance-model-power-source.js';
import { PowerModelSource } from './power-model-source.js';
import type { PowerSource } from './power-source.js';
import { RaplPowerSource } from './rapl-power-source.js';

/**
 * Picks each engine's energy source. `auto` prefers a measurement: RAPL for the in-process CPU engine
 * when the host exposes it (and only when one CPU engine shares the package, since RAPL measures the
 * whole package), otherwise the declared power model. A remote upstream cannot be measured from here,
 * so `auto` models it from its declared hardware (one H100 SXM unless told otherwise). An engine that
 * models its own device (the emulated engine) reports that model's energy under `auto` and `power-model`.
 * `nvml` and `rapl` asked for explicitly fail at start when unavailable, rather than silently estimating.
 */
export function selectPowerSource(options: {
  engine: EngineAdapter;
  config: EngineConfig;
  cpuEngineCount: number;
}): PowerSource {
  const { engine, config } = options;
  const energy = config.metering.energy;
  const requested = energy.source;
  if (requested === 'nvml') {
    const source = NvmlPowerSource.detect({ gpuIndices: energy.gpuIndices });
    if (!source)
      throw new Error(
        `engines.${engine.id}.metering.energy.source is nvml, but nvidia-smi reports no energy counter for GPUs ${energy.gpuIndices.join(', ')}`,
      );
    return source;
  }
  if ((requested === 'auto' || requested === 'power-model') && engine.modelledPower)
    return new PerformanceModelPowerSource(engine.modelledPower);
  const isCpuEngine = config.type === 'llama-cpp';
  if (requested === 'rapl' || (requested === 'auto' && isCpuEngine && options.cpuEngineCount === 1)) {
    const source = RaplPowerSource.detect();
    if (source) return source;
    if (requested === 'rapl')
      throw new Error(
        `engines.${engine.id}.metering.energy.source is rapl, but /sys/class/powercap is not readable here`,
      );
  }

  const profileName: HardwareProfileName = energy.hardware ?? (isCpuEngine ? 'cpu-core' : 'h100-sxm');
  const profile = hardwarePowerProfiles[profileName];
  const count = energy.count ?? (isCpuEngine && config.type === 'llama-cpp' ? config.threads : 1);
  // A single-threaded CPU engine is fully busy with one running sequence; an upstream GPU server is
  // assumed saturated at 16 concurrent requests unless configured.
  const saturationRequests = energy.saturationRequests ?? (isCpuEngine ? 1 : 16);
  return new PowerModelSource({
    idleWatts: energy.idleWatts ?? profile.idleWatts * count,
    maxWatts: energy.maxWatts ?? profile.maxWatts * count,
    utilisation: () => {
      const load = engine.load();
      return load.slotsBusy / Math.min(saturationRequests, Math.max(1, load.slotsTotal));
    },
  });
}
