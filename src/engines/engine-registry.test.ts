import { describe, expect, it } from 'vitest';
import { engineConfigSchema, engineDefinition, engineDefinitions } from './engine-registry.js';

describe('the engine registry', () => {
  it("builds config's engine union from the registered definitions, one option per type", () => {
    const optionTypes = engineConfigSchema.options.map((option) => option.shape.type.value);
    expect(optionTypes).toEqual(engineDefinitions.map((definition) => definition.type));
    for (const definition of engineDefinitions) {
      expect(engineDefinition(definition.type)).toBe(definition);
      expect(definition.type).toMatch(/^[a-z0-9]+(-[a-z0-9]+)*$/);
    }
  });

  it("checks each entry against its own type's schema, with the shared metering block", () => {
    const parsed = engineConfigSchema.parse({ type: 'openai-upstream', baseUrl: 'http://127.0.0.1:8000/v1' });
    expect(parsed.metering.energy.source).toBe('auto');
    // A setting of another type is an unknown setting here.
    expect(
      engineConfigSchema.safeParse({ type: 'openai-upstream', baseUrl: 'http://127.0.0.1:8000/v1', slots: 2 })
        .success,
    ).toBe(false);
  });
});
