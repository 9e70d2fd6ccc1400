import { Ajv } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { zodResponseFormat } from 'openai/helpers/zod';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { SeededRandom } from '../../core/seeded-random.js';
import { SchemaGenerationError, syntheticJsonObject, syntheticJsonValue } from './synthetic-json.js';

// Both drafts clients use: draft-07 (zod-to-json-schema, the openai SDK) and 2020-12 (zod 4, prefixItems).
const draft07 = addFormats.default(new Ajv({ strict: false, allErrors: true }));
const draft2020 = addFormats.default(new Ajv2020({ strict: false, allErrors: true }));

/** Draws many values from `schema` and checks each against a real validator. */
function expectValid(
  schema: Record<string, unknown>,
  validator: Ajv | Ajv2020 = draft07,
  draws = 200,
): unknown[] {
  const validate = validator.compile(schema);
  const values: unknown[] = [];
  for (let seed = 0; seed < draws; seed++) {
    const value = syntheticJsonValue(schema, new SeededRandom(seed));
    // What a client receives is text: the value must survive JSON.
    const parsed = JSON.parse(JSON.stringify(value));
    if (!validate(parsed))
      throw new Error(`seed ${seed}: ${JSON.stringify(parsed)}: ${validator.errorsText(validate.errors)}`);
    values.push(parsed);
  }
  return values;
}

describe('synthetic JSON from a schema', () => {
  it('fills objects: required properties always, optional ones sometimes, nothing undeclared', () => {
    const schema = {
      type: 'object',
      properties: {
        city: { type: 'string', minLength: 3, maxLength: 12 },
        unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
        days: { type: 'integer', minimum: 1, maximum: 7 },
        hourly: { type: 'boolean' },
      },
      required: ['city', 'unit'],
      additionalProperties: false,
    };
    const values = expectValid(schema) as Array<Record<string, unknown>>;
    expect(values.every((value) => 'city' in value && 'unit' in value)).toBe(true);
    expect(values.some((value) => 'days' in value)).toBe(true);
    expect(values.some((value) => !('days' in value))).toBe(true);
    expect(new Set(values.map((value) => value.unit))).toEqual(new Set(['celsius', 'fahrenheit']));
  });

  it('honours number bounds, exclusive bounds (both drafts’ spellings) and multipleOf', () => {
    expectValid({ type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1 });
    expectValid({ type: 'integer', exclusiveMinimum: 4, maximum: 5 });
    expectValid({ type: 'number', minimum: -3.5, maximum: -3.25 });
    expectValid({ type: 'number', multipleOf: 0.1, minimum: 0, maximum: 2 });
    expectValid({ type: 'integer', multipleOf: 5, minimum: 1 });
    expectValid({ type: 'integer', maximum: -1000 });
    // Draft 4's boolean exclusive bounds, checked by hand: ajv 8 reads only the later drafts.
    for (let seed = 0; seed < 50; seed++) {
      const value = syntheticJsonValue(
        { type: 'integer', minimum: 0, exclusiveMinimum: true, maximum: 2, exclusiveMaximum: true },
        new SeededRandom(seed),
      );
      expect(value).toBe(1);
    }
  });

  it('writes strings of the usual formats and lengths', () => {
    for (const format of [
      'date-time',
      'date',
      'time',
      'email',
      'uri',
      'hostname',
      'ipv4',
      'ipv6',
      'uuid',
      'duration',
    ])
      expectValid({ type: 'string', format }, draft07, 30);
    expectValid({ type: 'string', minLength: 40 });
    expectValid({ type: 'string', maxLength: 2 });
    expectValid({ type: 'string', minLength: 5, maxLength: 5 });
  });

  it('builds arrays: items, bounds, tuples (prefixItems and draft-07 items arrays), unique items', () => {
    expectValid({ type: 'array', items: { type: 'string' }, minItems: 4, maxItems: 6 });
    expectValid({
      type: 'array',
      items: { type: 'integer', minimum: 0, maximum: 1000 },
      uniqueItems: true,
      minItems: 3,
    });
    expectValid(
      { type: 'array', items: [{ type: 'string' }, { type: 'number' }], additionalItems: false },
      draft07,
    );
    expectValid(
      { type: 'array', prefixItems: [{ type: 'string' }, { type: 'boolean' }], items: false },
      draft2020,
    );
    expectValid({ type: 'array', maxItems: 0 });
  });

  it('follows anyOf, oneOf, allOf, type lists, const and nullable', () => {
    const values = expectValid({
      type: 'object',
      properties: {
        answer: { anyOf: [{ type: 'string' }, { type: 'null' }] },
        kind: { oneOf: [{ const: 'a' }, { type: 'integer', minimum: 10 }] },
        both: {
          allOf: [
            { type: 'object', properties: { x: { type: 'number' } }, required: ['x'] },
            { required: ['y'], properties: { y: { type: 'boolean' } } },
          ],
        },
        maybe: { type: ['string', 'null'] },
        fixed: { const: 42 },
      },
      required: ['answer', 'kind', 'both', 'maybe', 'fixed'],
      additionalProperties: false,
    }) as Array<Record<string, unknown>>;
    expect(values.some((value) => value.answer === null)).toBe(true);
    expect(values.some((value) => typeof value.answer === 'string')).toBe(true);
  });

  it('resolves $ref to $defs, definitions and the root, and ends recursive schemas', () => {
    const tree = {
      $defs: {
        node: {
          type: 'object',
          properties: {
            name: { type: 'string' },
            children: { type: 'array', items: { $ref: '#/$defs/node' } },
          },
          required: ['name', 'children'],
          additionalProperties: false,
        },
      },
      $ref: '#/$defs/node',
    };
    expectValid(tree, draft2020);
    expectValid({
      definitions: { leaf: { type: 'integer' } },
      type: 'object',
      properties: {
        value: { $ref: '#/definitions/leaf' },
        next: { anyOf: [{ $ref: '#' }, { type: 'null' }] },
      },
      required: ['value', 'next'],
    });
  });

  it('validates against what zod 4 and the openai SDK’s zodResponseFormat send', () => {
    const Step = z.object({ explanation: z.string(), output: z.string() });
    const fields = {
      steps: z.array(Step),
      final_answer: z.string(),
      confidence: z.number().min(0).max(1),
      tags: z.array(z.enum(['algebra', 'geometry'])).min(1),
      note: z.string().optional(),
      contact: z.object({ email: z.email(), site: z.url().nullable() }),
      kind: z.discriminatedUnion('type', [
        z.object({ type: z.literal('a'), a: z.number().int() }),
        z.object({ type: z.literal('b'), b: z.boolean() }),
      ]),
      id: z.uuid(),
      when: z.iso.datetime(),
    };
    // OpenAI's strict mode wants every field required: optional ones are spelt nullable there.
    const openaiFormat = zodResponseFormat(
      z.object({ ...fields, note: z.string().nullable() }),
      'math_reasoning',
    );
    expectValid(openaiFormat.json_schema.schema as Record<string, unknown>, draft07);
    expectValid(z.toJSONSchema(z.object(fields)) as Record<string, unknown>, draft2020);
    type Category = { name: string; subcategories: Category[] };
    const CategorySchema: z.ZodType<Category> = z.lazy(() =>
      z.object({ name: z.string(), subcategories: z.array(CategorySchema) }),
    );
    expectValid(
      zodResponseFormat(z.object({ root: CategorySchema }), 'tree').json_schema.schema as Record<
        string,
        unknown
      >,
      draft07,
    );
  });

  it('is the same value for the same seed', () => {
    const schema = { type: 'object', properties: { a: { type: 'string' }, b: { type: 'number' } } };
    expect(syntheticJsonValue(schema, new SeededRandom(5))).toEqual(
      syntheticJsonValue(schema, new SeededRandom(5)),
    );
  });

  it('refuses what admits no value or points nowhere, with the reason', () => {
    const error = (schema: unknown) => {
      try {
        syntheticJsonValue(schema, new SeededRandom(1));
      } catch (caught) {
        return caught;
      }
      return null;
    };
    expect(error({ $ref: '#/$defs/missing' })).toBeInstanceOf(SchemaGenerationError);
    expect(String(error({ $ref: 'https://example.com/schema.json' }))).toContain('not a reference within');
    expect(String(error({ enum: [] }))).toContain('empty `enum`');
    expect(String(error({ type: 'integer', minimum: 1.2, maximum: 1.8 }))).toContain('no integer fits');
    expect(error(false)).toBeInstanceOf(SchemaGenerationError);
  });
});

describe('synthetic JSON objects (json_object)', () => {
  it('are small objects of mixed values, different per seed', () => {
    const objects = Array.from({ length: 20 }, (_, seed) => syntheticJsonObject(new SeededRandom(seed)));
    for (const object of objects) {
      expect(Object.keys(object).length).toBeGreaterThanOrEqual(2);
      expect(Object.keys(object).length).toBeLessThanOrEqual(4);
      expect(JSON.parse(JSON.stringify(object))).toEqual(object);
    }
    expect(new Set(objects.map((object) => JSON.stringify(object))).size).toBeGreaterThan(15);
  });
});
