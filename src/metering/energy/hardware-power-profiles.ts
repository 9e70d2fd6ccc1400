/**
 * Declared power of the hardware a replica runs on, for the power model when nothing can be measured.
 * The rows live in the performance model's hardware catalogue, so metering, the emulated engine and the
 * simulator never disagree about a device.
 */
export {
  type HardwareProfileName,
  hardwareProfileNames,
  hardwareProfiles as hardwarePowerProfiles,
} from '../../performance-model/hardware-profiles.js';
