import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../core/config-error.js';
import { createEngines } from '../engine-registry.js';
import { ensureTinyModel } from '../llama-cpp/tiny-model.js';
import { emulatedConfigSchema } from './emulated-config.js';
import { EmulatedEngine } from './emulated-engine.js';
import { describeReplicaSpec, emulatedReplicaSpec, loadEmulatedModel } from './emulated-replica-spec.js';

function emulatedConfig(document: Record<string, unknown>) {
  return emulatedConfigSchema.parse({ type: 'emulated', ...document });
}

describe('emulated replica specs', () => {
  it('model a named profile at the configured precision and scheduler limits', async () => {
    const config = emulatedConfig({
      hardware: 'h100-sxm',
      devices: 2,
      model: 'llama-3.1-70b',
      weightDtype: 'fp8',
      kvDtype: 'fp8',
      maxNumSeqs: 64,
    });
    const spec = emulatedReplicaSpec(config, await loadEmulatedModel(config));
    expect(spec).toMatchObject({ deviceCount: 2, maxNumSeqs: 64, flavour: 'vllm-v1', prefixCaching: true });
    expect(spec.model.weightDtype).toBe('fp8');
    expect(spec.kvBlocks).toBeGreaterThan(1000);
    expect(describeReplicaSpec(spec)).toMatch(
      /^llama-3\.1-70b-fp8 on 2× h100-sxm \(vllm-v1\): \d+ KV blocks/,
    );
  });

  it('read a GGUF file’s shape, with the KV precision override applied', async () => {
    const file = await ensureTinyModel('random', mkdtempSync(path.join(tmpdir(), 'gravity-gguf-')));
    const bf16 = await loadEmulatedModel(emulatedConfig({ hardware: 'l4', model: { gguf: file } }));
    const fp8 = await loadEmulatedModel(
      emulatedConfig({ hardware: 'l4', model: { gguf: file }, kvDtype: 'fp8' }),
    );
    expect(bf16.weightDtype).toBe('gguf');
    expect(fp8.kvBytesPerToken).toBe(bf16.kvBytesPerToken / 2);
  });

  it('fail at engine start, naming the engine, when the model does not fit', async () => {
    const error = await createEngines(
      {
        engines: { big: emulatedConfig({ hardware: 'l4', model: 'llama-3.1-70b' }) },
        models: { m: { engine: 'big' } },
        dataDir: tmpdir(),
      } as unknown as Parameters<typeof createEngines>[0],
      {},
    ).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems[0]).toMatch(/^engines\.big: llama-3\.1-70b .* does not fit 1× l4/);
  });

  it('create one engine per replica, each serving the model it is listed for', async () => {
    const replica = emulatedConfig({ hardware: 'h200', model: 'mistral-7b', contextTokens: 4096 });
    const engines = await createEngines(
      {
        engines: { a: replica, b: replica },
        models: { mistral: { engines: ['a', 'b'] } },
        dataDir: tmpdir(),
      } as unknown as Parameters<typeof createEngines>[0],
      {},
    );
    expect(engines.map((engine) => [engine.id, engine.type, engine.models()[0]?.id])).toEqual([
      ['a', 'emulated', 'mistral'],
      ['b', 'emulated', 'mistral'],
    ]);
    expect(engines[0]).toBeInstanceOf(EmulatedEngine);
    expect(engines[0]?.models()[0]?.contextTokens).toBe(4096);
  });
});
