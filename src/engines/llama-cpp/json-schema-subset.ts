import { errors } from '../../core/errors.js';

/**
 * node-llama-cpp turns a JSON Schema into a GBNF grammar, but only a subset of JSON Schema, and it does
 * not refuse what it cannot honour: an unknown keyword is dropped (a `pattern` or `minimum` would not
 * constrain the output), an unrecognised schema becomes `null`, and every listed property is always
 * written. This module rewrites a client's schema into that subset where the rewrite keeps the meaning
 * (`anyOf` → its `oneOf`, type lists → alternatives, `definitions` → `$defs`, `{}` → any value), and
 * refuses the rest with a 400 naming the request parameter, so that a finished output always validates.
 *
 * Narrowings that keep every output valid are accepted: all properties are written (`required` holds),
 * no property beyond `properties` is written unless `additionalProperties` allows it.
 */
export type JsonSchemaObject = Record<string, unknown>;

/** Keywords that describe but never constrain: dropped. */
const annotations = new Set([
  'title',
  'description',
  'default',
  'examples',
  '$schema',
  '$id',
  '$comment',
  'deprecated',
  'readOnly',
  'writeOnly',
  'strict',
]);

const supportedFormats = new Set(['date-time', 'time', 'date']);
const primitiveTypes = new Set(['string', 'number', 'integer', 'boolean', 'null']);
const allTypes = new Set([...primitiveTypes, 'object', 'array']);

/** Any JSON value, in the grammar's subset (an array without `items` and an open object take anything). */
const anyValue: JsonSchemaObject = {
  oneOf: [
    { type: ['string', 'number', 'boolean', 'null'] },
    { type: 'object', additionalProperties: true },
    { type: 'array' },
  ],
};

class SchemaRefusal extends Error {}

/**
 * The schema rewritten into node-llama-cpp's subset. Throws a 400 naming `parameter` (e.g.
 * `response_format`, `tools`) with the path and keyword that cannot be honoured.
 */
export function toGrammarSchema(schema: unknown, parameter: string): JsonSchemaObject {
  const definitions: Record<string, JsonSchemaObject> = {};
  try {
    const root = schema as JsonSchemaObject;
    const rawDefinitions = {
      ...(isObject(root) && isObject(root.definitions) ? root.definitions : {}),
      ...(isObject(root) && isObject(root.$defs) ? root.$defs : {}),
    };
    for (const [name, definition] of Object.entries(rawDefinitions))
      definitions[name] = normalize(definition, `#/$defs/${name}`, rawDefinitions);
    const normalized = normalize(schema, '#', rawDefinitions);
    return Object.keys(definitions).length > 0 ? { oneOf: [normalized], $defs: definitions } : normalized;
  } catch (error) {
    if (error instanceof SchemaRefusal)
      throw errors.invalidRequest(
        `Invalid schema in '${parameter}': ${error.message} The in-process llama.cpp engine constrains output ` +
          'with a grammar and serves only the JSON Schema subset it can enforce (see src/engines/llama-cpp/README.md).',
        parameter,
        'invalid_value',
      );
    throw error;
  }
}

function isObject(value: unknown): value is JsonSchemaObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function refuse(path: string, reason: string): never {
  throw new SchemaRefusal(`at ${path}: ${reason}.`);
}

function normalize(schema: unknown, path: string, definitions: JsonSchemaObject): JsonSchemaObject {
  if (schema === true) return anyValue;
  if (schema === false) refuse(path, 'the schema `false` admits no value');
  if (!isObject(schema)) refuse(path, 'a schema must be an object or a boolean');
  const keywords: JsonSchemaObject = {};
  for (const [key, value] of Object.entries(schema))
    if (!annotations.has(key) && key !== '$defs' && key !== 'definitions') keywords[key] = value;
  if (Object.keys(keywords).length === 0) return anyValue;

  if ('$ref' in keywords) {
    if (Object.keys(keywords).length > 1) refuse(path, '`$ref` beside other keywords is not supported');
    const ref = keywords.$ref;
    const match = typeof ref === 'string' ? /^#\/(?:\$defs|definitions)\/([^/]+)$/.exec(ref) : null;
    if (!match || !((match[1] as string) in definitions))
      refuse(path, `\`$ref\` ${JSON.stringify(ref)} must point into the root's \`$defs\` or \`definitions\``);
    return { $ref: `#/$defs/${match[1]}` };
  }
  if ('allOf' in keywords) {
    const parts = keywords.allOf;
    if (!Array.isArray(parts) || parts.length !== 1 || Object.keys(keywords).length > 1)
      refuse(path, '`allOf` is supported only with a single schema');
    return normalize(parts[0], `${path}/allOf/0`, definitions);
  }
  for (const union of ['anyOf', 'oneOf'] as const) {
    if (!(union in keywords)) continue;
    const options = keywords[union];
    if (!Array.isArray(options) || options.length === 0)
      refuse(path, `\`${union}\` must be a non-empty array`);
    if (Object.keys(keywords).length > 1) refuse(path, `\`${union}\` beside other keywords is not supported`);
    // node-llama-cpp's `oneOf` accepts any alternative, which is `anyOf`'s meaning.
    return {
      oneOf: options.map((option, index) => normalize(option, `${path}/${union}/${index}`, definitions)),
    };
  }
  if ('const' in keywords) {
    if (Object.keys(keywords).some((key) => key !== 'const' && key !== 'type'))
      refuse(path, '`const` beside other keywords is not supported');
    return { const: literal(keywords.const, path, 'const') };
  }
  if ('enum' in keywords) {
    if (Object.keys(keywords).some((key) => key !== 'enum' && key !== 'type'))
      refuse(path, '`enum` beside other keywords is not supported');
    const values = keywords.enum;
    if (!Array.isArray(values) || values.length === 0) refuse(path, '`enum` must be a non-empty array');
    return { enum: values.map((value) => literal(value, path, 'enum')) };
  }

  let type = keywords.type;
  if (type === undefined) {
    if ('properties' in keywords || 'additionalProperties' in keywords || 'required' in keywords)
      type = 'object';
    else if ('items' in keywords || 'prefixItems' in keywords) type = 'array';
    else if ('minLength' in keywords || 'maxLength' in keywords || 'format' in keywords) type = 'string';
    else refuse(path, `no \`type\`, and the keywords ${Object.keys(keywords).join(', ')} are not supported`);
  }
  if (Array.isArray(type)) {
    if (type.length === 0) refuse(path, '`type` must not be empty');
    if (type.length === 1) return normalize({ ...keywords, type: type[0] }, path, definitions);
    // Each type with the keywords that concern it, as alternatives: a type list's keywords would
    // otherwise be dropped by the grammar (`maxLength` on `["string", "null"]`).
    return {
      oneOf: type.map((single) =>
        normalize({ ...withoutForeignKeywords(keywords, single), type: single }, path, definitions),
      ),
    };
  }
  if (typeof type !== 'string' || !allTypes.has(type))
    refuse(path, `unknown \`type\` ${JSON.stringify(type)}`);
  if (type === 'object') return normalizeObject(keywords, path, definitions);
  if (type === 'array') return normalizeArray(keywords, path, definitions);
  if (type === 'string') return normalizeString(keywords, path);
  if (type === 'number' || type === 'integer') return normalizeNumber(keywords, path, type);
  onlyKeywords(keywords, path, ['type']);
  return { type };
}

/**
 * Every number the grammar writes lies strictly within ±numberBound (output-grammars.ts): bounds at least
 * that wide always hold (zod writes ±MAX_SAFE_INTEGER for `.int()`), tighter ones cannot be enforced.
 */
const numberBound = 1e15;
const numberKeywords = ['type', 'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'];

function normalizeNumber(
  keywords: JsonSchemaObject,
  path: string,
  type: 'number' | 'integer',
): JsonSchemaObject {
  onlyKeywords(keywords, path, numberKeywords);
  for (const key of ['minimum', 'exclusiveMinimum'])
    if (key in keywords && !(typeof keywords[key] === 'number' && (keywords[key] as number) <= -numberBound))
      refuse(path, `\`${key}\` above -${numberBound} cannot be enforced`);
  for (const key of ['maximum', 'exclusiveMaximum'])
    if (key in keywords && !(typeof keywords[key] === 'number' && (keywords[key] as number) >= numberBound))
      refuse(path, `\`${key}\` below ${numberBound} cannot be enforced`);
  return { type };
}

const objectKeywords = [
  'type',
  'properties',
  'required',
  'additionalProperties',
  'minProperties',
  'maxProperties',
];
const arrayKeywords = ['type', 'items', 'prefixItems', 'minItems', 'maxItems'];
const stringKeywords = ['type', 'minLength', 'maxLength', 'format'];

function withoutForeignKeywords(keywords: JsonSchemaObject, type: unknown): JsonSchemaObject {
  const byType: Record<string, string[]> = {
    object: objectKeywords,
    array: arrayKeywords,
    string: stringKeywords,
    number: numberKeywords,
    integer: numberKeywords,
  };
  const own = byType[String(type)] ?? ['type'];
  const known = new Set(Object.values(byType).flat());
  const kept: JsonSchemaObject = {};
  // Keywords of the other types are dropped (JSON Schema ignores them for this type); unknown ones stay
  // so that they are refused.
  for (const [key, value] of Object.entries(keywords))
    if (own.includes(key) || !known.has(key)) kept[key] = value;
  return kept;
}

function onlyKeywords(keywords: JsonSchemaObject, path: string, allowed: readonly string[]): void {
  for (const key of Object.keys(keywords))
    if (!allowed.includes(key))
      refuse(path, `the keyword \`${key}\` is not supported for type ${JSON.stringify(keywords.type)}`);
}

function literal(value: unknown, path: string, keyword: string): string | number | boolean | null {
  if (value === null || ['string', 'number', 'boolean'].includes(typeof value))
    return value as string | number | boolean | null;
  return refuse(path, `\`${keyword}\` values must be strings, numbers, booleans or null`);
}

function count(value: unknown, path: string, keyword: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0)
    refuse(path, `\`${keyword}\` must be a non-negative integer`);
  return value;
}

function normalizeObject(
  keywords: JsonSchemaObject,
  path: string,
  definitions: JsonSchemaObject,
): JsonSchemaObject {
  onlyKeywords(keywords, path, objectKeywords);
  const properties: JsonSchemaObject = {};
  const given = keywords.properties ?? {};
  if (!isObject(given)) refuse(path, '`properties` must be an object');
  for (const [name, property] of Object.entries(given))
    properties[name] = normalize(property, `${path}/properties/${name}`, definitions);
  const required = keywords.required ?? [];
  if (!Array.isArray(required)) refuse(path, '`required` must be an array');
  const additional = keywords.additionalProperties;
  for (const name of required)
    if (
      typeof name !== 'string' ||
      (!(name in properties) && (additional === undefined || additional === false))
    )
      refuse(path, `required property ${JSON.stringify(name)} is not among \`properties\``);
  const result: JsonSchemaObject = { type: 'object', properties };
  if (additional === true) result.additionalProperties = true;
  else if (additional !== undefined && additional !== false)
    result.additionalProperties = normalize(additional, `${path}/additionalProperties`, definitions);
  const minProperties = count(keywords.minProperties, path, 'minProperties');
  const maxProperties = count(keywords.maxProperties, path, 'maxProperties');
  // Every listed property is always written: a maximum below their number cannot hold.
  if (maxProperties !== undefined && maxProperties < Object.keys(properties).length)
    refuse(path, '`maxProperties` is below the number of `properties` (the grammar writes them all)');
  if (
    minProperties !== undefined &&
    minProperties > Object.keys(properties).length &&
    !result.additionalProperties
  )
    refuse(path, '`minProperties` exceeds the properties the schema allows');
  if (minProperties !== undefined) result.minProperties = minProperties;
  if (maxProperties !== undefined) result.maxProperties = maxProperties;
  return result;
}

function normalizeArray(
  keywords: JsonSchemaObject,
  path: string,
  definitions: JsonSchemaObject,
): JsonSchemaObject {
  onlyKeywords(keywords, path, arrayKeywords);
  const result: JsonSchemaObject = { type: 'array' };
  if (keywords.items === false) {
    if (!Array.isArray(keywords.prefixItems)) refuse(path, '`items: false` needs `prefixItems`');
    result.maxItems = keywords.prefixItems.length;
  } else if (keywords.items !== undefined)
    result.items = normalize(keywords.items, `${path}/items`, definitions);
  if (keywords.prefixItems !== undefined) {
    if (!Array.isArray(keywords.prefixItems)) refuse(path, '`prefixItems` must be an array');
    result.prefixItems = keywords.prefixItems.map((item, index) =>
      normalize(item, `${path}/prefixItems/${index}`, definitions),
    );
  }
  const minItems = count(keywords.minItems, path, 'minItems');
  const maxItems = count(keywords.maxItems, path, 'maxItems');
  if (minItems !== undefined && maxItems !== undefined && maxItems < minItems)
    refuse(path, '`maxItems` is below `minItems`');
  const prefixLength = Array.isArray(keywords.prefixItems) ? keywords.prefixItems.length : 0;
  // The generator writes every prefix item.
  if (maxItems !== undefined && maxItems < prefixLength)
    refuse(path, '`maxItems` is below the `prefixItems` given');
  if (minItems !== undefined) result.minItems = minItems;
  if (maxItems !== undefined)
    result.maxItems = Math.min(maxItems, (result.maxItems as number | undefined) ?? maxItems);
  return result;
}

function normalizeString(keywords: JsonSchemaObject, path: string): JsonSchemaObject {
  onlyKeywords(keywords, path, stringKeywords);
  if (keywords.format !== undefined) {
    if (typeof keywords.format !== 'string' || !supportedFormats.has(keywords.format))
      refuse(
        path,
        `the string \`format\` ${JSON.stringify(keywords.format)} is not supported (only date-time, date, time)`,
      );
    if (keywords.minLength !== undefined || keywords.maxLength !== undefined)
      refuse(path, '`format` beside `minLength`/`maxLength` is not supported');
    return { type: 'string', format: keywords.format };
  }
  const minLength = count(keywords.minLength, path, 'minLength');
  const maxLength = count(keywords.maxLength, path, 'maxLength');
  if (minLength !== undefined && maxLength !== undefined && maxLength < minLength)
    refuse(path, '`maxLength` is below `minLength`');
  return {
    type: 'string',
    ...(minLength !== undefined ? { minLength } : {}),
    ...(maxLength !== undefined ? { maxLength } : {}),
  };
}
