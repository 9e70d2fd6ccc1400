import { type HardwareProfileName, hardwareProfiles } from '../performance-model/hardware-profiles.js';
import { type ModelProfileName, modelProfileNames } from '../performance-model/model-profiles.js';

/** What `--emulate h100:llama-3.1-8b:4x2` asks for: replicas of one model, each on `devices` GPUs. */
export interface EmulateOption {
  hardware: HardwareProfileName;
  model: ModelProfileName;
  replicas: number;
  devices: number;
}

/** Short names accepted on the command line for the catalogue's hardware names. */
export const hardwareAliases: Record<string, HardwareProfileName> = {
  h100: 'h100-sxm',
  a100: 'a100-80gb',
};

const maxReplicas = 256;

/**
 * Parses `<hardware>:<model>[:<replicas>[x<devices>]]` (replicas default to 1, devices to 1), e.g.
 * `h100-sxm:llama-3.1-8b:4` or `h100:llama-3.1-70b:2x4`. Throws an Error whose message says what is wrong
 * and what is accepted.
 */
export function parseEmulateOption(text: string): EmulateOption {
  const fields = text.trim().split(':');
  if (fields.length < 2 || fields.length > 3)
    throw new Error(`expected <hardware>:<model>:<replicas>[x<devices>], got '${text}'`);
  const [hardwareName = '', modelName = '', counts = '1'] = fields;
  const hardware = (hardwareAliases[hardwareName] ?? hardwareName) as HardwareProfileName;
  if (!Object.hasOwn(hardwareProfiles, hardware)) {
    const known = [...Object.keys(hardwareProfiles), ...Object.keys(hardwareAliases)].join(', ');
    throw new Error(`unknown hardware '${hardwareName}' (known: ${known})`);
  }
  if (!(modelProfileNames as readonly string[]).includes(modelName))
    throw new Error(`unknown model profile '${modelName}' (known: ${modelProfileNames.join(', ')})`);
  const match = /^(\d+)(?:x(\d+))?$/.exec(counts);
  const replicas = Number(match?.[1]);
  const devices = Number(match?.[2] ?? '1');
  if (!match || replicas < 1 || replicas > maxReplicas || devices < 1 || devices > 64)
    throw new Error(
      `replicas must look like 4 or 2x4 (replicas 1–${maxReplicas}, devices per replica 1–64), got '${counts}'`,
    );
  return { hardware, model: modelName as ModelProfileName, replicas, devices };
}

/**
 * The configuration for an emulated fleet: engines `emulated-0` … `emulated-<N-1>`, each one replica on
 * `devices` GPUs, all serving the model under its profile name. Each replica's cost is the hardware's
 * hourly price, so the ledger shows what the fleet would cost.
 */
export function emulatedFleetDocument(option: EmulateOption): {
  engines: Record<string, unknown>;
  models: Record<string, unknown>;
} {
  const engines: Record<string, unknown> = {};
  const hourlyUsd = hardwareProfiles[option.hardware].hourlyUsd * option.devices;
  for (let index = 0; index < option.replicas; index++) {
    engines[`emulated-${index}`] = {
      type: 'emulated',
      hardware: option.hardware,
      devices: option.devices,
      model: option.model,
      metering: { cost: { hourlyUsd } },
    };
  }
  return { engines, models: { [option.model]: { engines: Object.keys(engines) } } };
}
