import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { GravityError } from '../../core/errors.js';
import { toGrammarSchema } from './json-schema-subset.js';

function refusal(schema: unknown): GravityError {
  try {
    toGrammarSchema(schema, 'response_format');
  } catch (error) {
    if (error instanceof GravityError) return error;
    throw error;
  }
  throw new Error('the schema was accepted');
}

describe('toGrammarSchema', () => {
  it('rewrites anyOf into the grammar’s oneOf and type lists into alternatives that keep their keywords', () => {
    expect(toGrammarSchema({ anyOf: [{ type: 'string' }, { type: 'integer' }] }, 'response_format')).toEqual({
      oneOf: [{ type: 'string' }, { type: 'integer' }],
    });
    expect(
      toGrammarSchema({ type: ['string', 'null'], maxLength: 3, description: 'x' }, 'response_format'),
    ).toEqual({
      oneOf: [{ type: 'string', maxLength: 3 }, { type: 'null' }],
    });
  });

  it('moves definitions to $defs, and reads an empty schema as any JSON value', () => {
    const schema = toGrammarSchema(
      {
        type: 'object',
        properties: { a: { $ref: '#/definitions/A' }, b: {} },
        definitions: { A: { type: 'boolean' } },
      },
      'tools',
    );
    expect(schema.$defs).toEqual({ A: { type: 'boolean' } });
    const root = (
      schema.oneOf as Array<{ properties: Record<string, { oneOf?: unknown[]; $ref?: string }> }>
    )[0];
    expect(root?.properties.a).toEqual({ $ref: '#/$defs/A' });
    expect(root?.properties.b?.oneOf).toHaveLength(3);
  });

  it('keeps only what its grammar writes: every property, valid against the original schema', () => {
    const original = {
      type: 'object',
      properties: {
        name: { type: 'string', minLength: 1, maxLength: 5 },
        tags: { type: 'array', items: { enum: ['a', 'b'] }, maxItems: 2 },
      },
      required: ['name'],
    };
    const rewritten = toGrammarSchema(original, 'response_format');
    expect(rewritten).toEqual({
      type: 'object',
      properties: {
        name: { type: 'string', minLength: 1, maxLength: 5 },
        tags: { type: 'array', items: { enum: ['a', 'b'] }, maxItems: 2 },
      },
    });
    // A value shaped like the grammar's output validates against the client's schema.
    expect(new Ajv().validate(original, { name: 'abc', tags: ['a'] })).toBe(true);
  });

  it('accepts number bounds no tighter than what the grammar writes (zod’s safe-integer bounds)', () => {
    const safe = { type: 'integer', minimum: -Number.MAX_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER };
    expect(toGrammarSchema(safe, 'response_format')).toEqual({ type: 'integer' });
  });

  it('refuses with a 400 naming the parameter what the grammar cannot enforce', () => {
    const cases: Array<[unknown, string]> = [
      [{ type: 'string', pattern: '^a' }, 'pattern'],
      [{ type: 'integer', minimum: 0 }, 'minimum'],
      [{ type: 'number', maximum: 100 }, 'maximum'],
      [{ type: 'integer', multipleOf: 2 }, 'multipleOf'],
      [{ allOf: [{ type: 'string' }, { maxLength: 2 }] }, 'allOf'],
      [{ $ref: 'https://example.com/schema' }, '$ref'],
      [{ type: 'object', properties: {}, required: ['missing'] }, 'required property'],
      [{ type: 'string', format: 'email' }, 'format'],
      [{ enum: [{ a: 1 }] }, 'enum'],
      [false, 'admits no value'],
    ];
    for (const [schema, named] of cases) {
      const error = refusal(schema);
      expect(error.status).toBe(400);
      expect(error.toBody().error.param).toBe('response_format');
      expect(error.message).toContain(named);
    }
  });
});
