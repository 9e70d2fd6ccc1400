/**
 * Declared power of the hardware a replica runs on, for the power model when nothing can be measured.
 * Maximum power is the datasheet TDP; idle power is an estimate. Sources: ../shared/published-figures.md
 * (NVIDIA datasheets; H100 idle "roughly 60–90 W", of which we take the middle). The issue that adds the
 * fleet performance model extends this table.
 */
export const hardwarePowerProfiles = {
  'h100-sxm': {
    idleWatts: 75,
    maxWatts: 700,
    source: 'NVIDIA H100 SXM datasheet: 700 W TDP; idle 60–90 W observed',
  },
  h200: { idleWatts: 75, maxWatts: 700, source: 'NVIDIA H200 datasheet: 700 W TDP; idle assumed as H100' },
  'a100-80gb': {
    idleWatts: 50,
    maxWatts: 400,
    source: 'NVIDIA A100 SXM 80 GB datasheet: 400 W TDP; idle estimated',
  },
  /**
   * One core of a server CPU: 200–300 W parts spread over 24–32 cores give ~8–12 W per busy core. A
   * declared estimate for the in-process llama.cpp engine when RAPL is unreadable (VMs, containers).
   */
  'cpu-core': {
    idleWatts: 2,
    maxWatts: 12,
    source: 'estimate: ~10 W per busy server-CPU core, 2 W idle share',
  },
} as const;

export type HardwareProfileName = keyof typeof hardwarePowerProfiles;
export const hardwareProfileNames = Object.keys(hardwarePowerProfiles) as [
  HardwareProfileName,
  ...HardwareProfileName[],
];
