import type { SeededRandom } from '../../core/seeded-random.js';
import { syntheticWords } from './synthetic-text.js';

/**
 * Synthetic JSON for the emulated engine: a value that validates against a JSON Schema (structured
 * outputs, tool-call arguments), or a small object (`json_object`). Deterministic for a seeded generator.
 *
 * A small generator, not a solver: it covers what clients send — the openai SDK's `zodResponseFormat`,
 * the Vercel AI SDK, LangChain, zod's `toJSONSchema`, hand-written schemas:
 * - `type` (one or several), `const`, `enum`, `nullable`;
 * - objects: `properties`, `required`, `additionalProperties` (false, true or a schema), `minProperties`,
 *   `maxProperties`; optional properties are included at random near the top, left out deeper down;
 * - arrays: `items`, `prefixItems` / tuple `items`, `minItems`, `maxItems`, `uniqueItems` (best effort);
 * - strings: `minLength`, `maxLength`, `format` (date-time, date, time, email, uri, hostname, ipv4,
 *   ipv6, uuid, duration …), and `pattern` only as far as the value drawn for the format matches it;
 * - numbers and integers: `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum` (draft 4's
 *   booleans too), `multipleOf`;
 * - `anyOf`, `oneOf` (one branch, drawn; a value that happens to match two `oneOf` branches is not
 *   avoided), `allOf` (merged), `$ref` to any `#…` JSON pointer (`$defs`, `definitions`, `#` itself).
 * Past a nesting depth it takes the shortest way out (no optional properties, `minItems` items, a
 * non-recursive branch), so recursive schemas end.
 *
 * A schema it cannot follow (a `$ref` that points nowhere, `false`) throws SchemaGenerationError, which
 * the engine turns into a 400 naming the parameter, as a grammar-constrained engine would.
 */

export type JsonSchema = Record<string, unknown>;

export class SchemaGenerationError extends Error {}

/** Nesting depth after which the generator takes the shortest way out. */
const shallowDepth = 3;
/** Nesting depth at which a schema that still demands more nesting is refused. */
const maximumDepth = 64;

/** A value that validates against `schema` (a JSON Schema object or boolean). */
export function syntheticJsonValue(schema: unknown, random: SeededRandom): unknown {
  return new SchemaValueGenerator(schema, random).value(schema, 0);
}

/** A small JSON object with a few keys of mixed types: what `response_format: json_object` gets. */
export function syntheticJsonObject(random: SeededRandom): Record<string, unknown> {
  const object: Record<string, unknown> = {};
  const keys = random.integer(2, 4);
  for (let index = 0; Object.keys(object).length < keys && index < 16; index++) {
    const key = syntheticWords(random, 1, '_');
    if (key in object) continue;
    const kind = random.integer(0, 3);
    object[key] =
      kind === 0
        ? syntheticWords(random, random.integer(2, 6))
        : kind === 1
          ? random.integer(0, 1000)
          : kind === 2
            ? random.uniform() < 0.5
            : Array.from({ length: random.integer(1, 3) }, () => syntheticWords(random, 1));
  }
  return object;
}

class SchemaValueGenerator {
  constructor(
    private readonly root: unknown,
    private readonly random: SeededRandom,
  ) {}

  value(schema: unknown, depth: number): unknown {
    if (depth > maximumDepth) throw new SchemaGenerationError('the schema nests deeper than 64 levels');
    if (schema === true || schema === undefined || schema === null) return this.words(1, 3);
    if (schema === false) throw new SchemaGenerationError('a schema of `false` admits no value');
    if (typeof schema !== 'object' || Array.isArray(schema))
      throw new SchemaGenerationError(
        `a schema must be an object or a boolean, not ${JSON.stringify(schema)}`,
      );
    const node = this.resolved(schema as JsonSchema);
    if ('const' in node) return node.const;
    if (Array.isArray(node.enum)) {
      if (node.enum.length === 0) throw new SchemaGenerationError('an empty `enum` admits no value');
      return this.pick(node.enum);
    }
    if (Array.isArray(node.allOf)) return this.value(this.mergedAllOf(node), depth);
    const branches = Array.isArray(node.anyOf) ? node.anyOf : Array.isArray(node.oneOf) ? node.oneOf : null;
    if (branches) {
      if (branches.length === 0) throw new SchemaGenerationError('an empty `anyOf`/`oneOf` admits no value');
      const { anyOf: _anyOf, oneOf: _oneOf, ...rest } = node;
      // Keywords beside the branches (a `type`, shared properties) apply to whichever branch is drawn.
      const branch = this.branch(branches, depth);
      const merged =
        Object.keys(rest).length > 0 && isObject(branch) ? mergeSchemas(rest, this.resolved(branch)) : branch;
      return this.value(merged, depth);
    }
    switch (this.typeOf(node, depth)) {
      case 'null':
        return null;
      case 'boolean':
        return this.random.uniform() < 0.5;
      case 'integer':
        return this.number(node, true);
      case 'number':
        return this.number(node, false);
      case 'string':
        return this.string(node);
      case 'array':
        return this.array(node, depth);
      default:
        return this.object(node, depth);
    }
  }

  /** The schema with its `$ref` followed (siblings of `$ref` kept over the target's keywords). */
  private resolved(schema: JsonSchema): JsonSchema {
    let node = schema;
    for (let hops = 0; typeof node.$ref === 'string'; hops++) {
      if (hops > 32) throw new SchemaGenerationError(`\`$ref\` ${node.$ref} loops`);
      const { $ref, ...siblings } = node;
      const target = this.pointer($ref as string);
      if (target === true || target === undefined) return siblings;
      if (typeof target !== 'object' || target === null)
        throw new SchemaGenerationError(`\`$ref\` ${$ref} does not point to a schema`);
      node =
        Object.keys(siblings).length > 0
          ? { ...(target as JsonSchema), ...siblings }
          : (target as JsonSchema);
    }
    return node;
  }

  /** Follows a same-document reference: `#`, `#/$defs/name`, `#/definitions/name`, any JSON pointer. */
  private pointer(reference: string): unknown {
    if (!reference.startsWith('#'))
      throw new SchemaGenerationError(`\`$ref\` ${reference} is not a reference within the schema`);
    let target: unknown = this.root;
    const path = decodeURIComponent(reference.slice(1));
    if (path === '') return target;
    for (const raw of path.replace(/^\//, '').split('/')) {
      const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
      if (target === null || typeof target !== 'object' || !(key in target))
        throw new SchemaGenerationError(`\`$ref\` ${reference} points to nothing in the schema`);
      target = (target as Record<string, unknown>)[key];
    }
    return target;
  }

  private mergedAllOf(node: JsonSchema): JsonSchema {
    const { allOf, ...rest } = node;
    let merged: JsonSchema = rest;
    for (const part of allOf as unknown[])
      if (part && typeof part === 'object') merged = mergeSchemas(merged, this.resolved(part as JsonSchema));
    return merged;
  }

  /** A branch of `anyOf`/`oneOf`: drawn near the top; deeper down, one that does not nest further. */
  private branch(branches: unknown[], depth: number): unknown {
    if (depth >= shallowDepth) {
      const flat = branches.find((branch) => this.isTerminal(branch));
      if (flat !== undefined) return flat;
    }
    return this.pick(branches);
  }

  private isTerminal(schema: unknown): boolean {
    if (typeof schema !== 'object' || schema === null) return schema === true;
    const node = schema as JsonSchema;
    if (typeof node.$ref === 'string' || node.anyOf || node.oneOf || node.allOf) return false;
    if ('const' in node || node.enum) return true;
    const type = node.type;
    const types = Array.isArray(type) ? type : [type];
    return types.some((name) => name !== 'object' && name !== 'array' && name !== undefined);
  }

  private typeOf(node: JsonSchema, depth: number): string {
    const type = node.type;
    if (typeof type === 'string') return node.nullable === true && depth >= shallowDepth ? 'null' : type;
    if (Array.isArray(type) && type.length > 0) {
      // Deeper down, null (or any scalar) ends a recursive structure.
      if (depth >= shallowDepth) {
        const scalar = type.find((name) => name !== 'object' && name !== 'array');
        if (typeof scalar === 'string') return scalar;
      }
      const named = type.filter((name) => name !== 'null');
      return String(this.pick(named.length > 0 && this.random.uniform() < 0.8 ? named : type));
    }
    // No `type`: read it from the keywords present.
    if (node.properties || node.required || node.additionalProperties !== undefined) return 'object';
    if (node.items || node.prefixItems || node.minItems !== undefined) return 'array';
    if (node.minimum !== undefined || node.maximum !== undefined || node.multipleOf !== undefined)
      return 'number';
    return 'string';
  }

  private object(node: JsonSchema, depth: number): Record<string, unknown> {
    const properties = (isObject(node.properties) ? node.properties : {}) as Record<string, unknown>;
    const required = new Set(Array.isArray(node.required) ? (node.required as string[]) : []);
    const additional = node.additionalProperties;
    const minimum = typeof node.minProperties === 'number' ? node.minProperties : 0;
    const maximum = typeof node.maxProperties === 'number' ? node.maxProperties : Number.POSITIVE_INFINITY;
    const object: Record<string, unknown> = {};
    const count = () => Object.keys(object).length;
    for (const key of required)
      object[key] = this.value(
        key in properties ? properties[key] : isObject(additional) ? additional : true,
        depth + 1,
      );
    const optional = Object.keys(properties).filter((key) => !required.has(key));
    for (const key of optional) {
      if (count() >= maximum) break;
      const wanted = count() < minimum || (depth < shallowDepth && this.random.uniform() < 0.5);
      if (wanted) object[key] = this.value(properties[key], depth + 1);
    }
    // A free-form object (no `properties` at all) gets a few keys of its own, as a model would write;
    // `properties: {}` declares an empty object.
    const freeForm = node.properties === undefined && additional !== false;
    const extraKeys = freeForm && depth < shallowDepth ? this.random.integer(1, 3) : 0;
    const valueSchema = isObject(additional) ? additional : { type: 'string' };
    for (
      let index = 0;
      (count() < minimum || index < extraKeys) && count() < maximum && index < 64;
      index++
    ) {
      if (additional === false) break;
      const key = syntheticWords(this.random, 1, '_');
      if (!(key in object)) object[key] = this.value(valueSchema, depth + 1);
    }
    return object;
  }

  private array(node: JsonSchema, depth: number): unknown[] {
    const tuple = Array.isArray(node.prefixItems)
      ? node.prefixItems
      : Array.isArray(node.items)
        ? node.items
        : [];
    const rest = Array.isArray(node.items) ? node.additionalItems : node.items;
    const minimum = typeof node.minItems === 'number' ? node.minItems : 0;
    const maximum = typeof node.maxItems === 'number' ? node.maxItems : Number.POSITIVE_INFINITY;
    const drawn = depth < shallowDepth ? this.random.integer(1, 3) : 0;
    let length = Math.min(maximum, Math.max(minimum, tuple.length, drawn));
    // Items beyond a tuple follow `items` (2020-12) or `additionalItems`; where those forbid any, stop.
    if (rest === false) length = Math.min(length, tuple.length);
    const unique = node.uniqueItems === true;
    const seen = new Set<string>();
    const items: unknown[] = [];
    for (let index = 0; index < length; index++) {
      const schema = index < tuple.length ? tuple[index] : rest;
      let item = this.value(schema, depth + 1);
      for (let attempt = 0; unique && seen.has(JSON.stringify(item)) && attempt < 16; attempt++)
        item = this.value(schema, depth + 1);
      if (unique && seen.has(JSON.stringify(item))) break;
      seen.add(JSON.stringify(item));
      items.push(item);
    }
    return items;
  }

  private string(node: JsonSchema): string {
    const format = typeof node.format === 'string' ? node.format : null;
    let text = format ? this.formatted(format) : null;
    if (text === null) {
      const minLength = typeof node.minLength === 'number' ? node.minLength : 0;
      const maxLength = typeof node.maxLength === 'number' ? node.maxLength : Number.POSITIVE_INFINITY;
      text = this.words(1, 4);
      while (text.length < minLength) text += ` ${this.words(1, 1)}`;
      if (text.length > maxLength)
        text = text.slice(0, maxLength).trimEnd().padEnd(Math.min(minLength, maxLength), 'x');
    }
    return text;
  }

  /** A value of a string format (the names JSON Schema and ajv-formats use); null for unknown formats. */
  private formatted(format: string): string | null {
    const random = this.random;
    const two = (value: number) => String(value).padStart(2, '0');
    const word = () => syntheticWords(random, 1, '-');
    const date = () =>
      `20${two(random.integer(20, 29))}-${two(random.integer(1, 12))}-${two(random.integer(1, 28))}`;
    const time = () =>
      `${two(random.integer(0, 23))}:${two(random.integer(0, 59))}:${two(random.integer(0, 59))}`;
    const hex = (digits: number) =>
      Array.from({ length: digits }, () => random.integer(0, 15).toString(16)).join('');
    switch (format) {
      case 'date-time':
        return `${date()}T${time()}Z`;
      case 'date':
        return date();
      case 'time':
        return `${time()}Z`;
      case 'duration':
        return `PT${random.integer(1, 59)}M`;
      case 'email':
      case 'idn-email':
        return `${word()}@example.com`;
      case 'hostname':
      case 'idn-hostname':
        return `${word()}.example.com`;
      case 'uri':
      case 'url':
      case 'iri':
      case 'uri-reference':
      case 'iri-reference':
        return `https://example.com/${word()}`;
      case 'uri-template':
        return `https://example.com/{${word()}}`;
      case 'ipv4':
        return `10.${random.integer(0, 255)}.${random.integer(0, 255)}.${random.integer(1, 254)}`;
      case 'ipv6':
        return `2001:db8::${hex(4)}`;
      case 'uuid':
        return `${hex(8)}-${hex(4)}-4${hex(3)}-${'89ab'[random.integer(0, 3)]}${hex(3)}-${hex(12)}`;
      case 'json-pointer':
        return `/${word()}`;
      case 'relative-json-pointer':
        return '0';
      case 'regex':
        return `${word()}+`;
      case 'byte':
      case 'base64':
        return Buffer.from(word()).toString('base64');
      default:
        return null;
    }
  }

  private number(node: JsonSchema, integer: boolean): number {
    const bound = (value: unknown) => (typeof value === 'number' && Number.isFinite(value) ? value : null);
    // Draft 4 spelled exclusive bounds as booleans beside minimum/maximum; later drafts as numbers.
    let low = bound(node.minimum);
    let high = bound(node.maximum);
    let lowExclusive = node.exclusiveMinimum === true;
    let highExclusive = node.exclusiveMaximum === true;
    const exclusiveLow = bound(node.exclusiveMinimum);
    const exclusiveHigh = bound(node.exclusiveMaximum);
    if (exclusiveLow !== null && (low === null || exclusiveLow >= low)) {
      low = exclusiveLow;
      lowExclusive = true;
    }
    if (exclusiveHigh !== null && (high === null || exclusiveHigh <= high)) {
      high = exclusiveHigh;
      highExclusive = true;
    }
    if (low === null) low = high === null ? 0 : Math.min(0, high - 100);
    if (high === null) high = Math.max(low + 100, 100);
    const step = bound(node.multipleOf);
    if (integer || step !== null) {
      const unit = step ?? 1;
      const unitInteger = integer && !Number.isInteger(unit) ? 1 : unit;
      let first = Math.ceil(low / unitInteger);
      let last = Math.floor(high / unitInteger);
      if (lowExclusive && first * unitInteger <= low) first++;
      if (highExclusive && last * unitInteger >= high) last--;
      if (last < first)
        throw new SchemaGenerationError(`no ${integer ? 'integer' : 'number'} fits the bounds`);
      // Rounding to the step's own decimals keeps 3 × 0.1 from becoming 0.30000000000000004; a value
      // whose quotient by a fractional step is still not a whole number in floating point (0.6 / 0.1) is
      // redrawn, since validators divide.
      let value = 0;
      for (let attempt = 0; attempt < 32; attempt++) {
        const multiple = this.random.integer(first, Math.min(last, first + 1000));
        value = Number((multiple * unitInteger).toFixed(decimalsOf(unitInteger)));
        if (Number.isInteger(value / unitInteger)) return value;
      }
      return first <= 0 && last >= 0 ? 0 : value;
    }
    const value = Number((low + this.random.uniform() * (high - low)).toFixed(2));
    if (
      (value > low || (!lowExclusive && value === low)) &&
      (value < high || (!highExclusive && value === high))
    )
      return value;
    return (low + high) / 2;
  }

  private words(fewest: number, most: number): string {
    return syntheticWords(this.random, this.random.integer(fewest, most));
  }

  private pick<T>(values: readonly T[]): T {
    return values[this.random.integer(0, values.length - 1)] as T;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** Two schemas as one (allOf): properties merged, `required` joined, other keywords of `b` over `a`'s. */
function mergeSchemas(a: JsonSchema, b: JsonSchema): JsonSchema {
  const merged: JsonSchema = { ...a, ...b };
  if (isObject(a.properties) || isObject(b.properties))
    merged.properties = { ...(a.properties as object), ...(b.properties as object) };
  if (Array.isArray(a.required) || Array.isArray(b.required))
    merged.required = [
      ...new Set([...((a.required as string[]) ?? []), ...((b.required as string[]) ?? [])]),
    ];
  return merged;
}

function decimalsOf(value: number): number {
  const text = String(value);
  const exponent = text.match(/e-(\d+)$/);
  if (exponent) return Math.min(20, Number(exponent[1]) + (text.split('e')[0]?.split('.')[1]?.length ?? 0));
  return Math.min(20, text.split('.')[1]?.length ?? 0);
}
