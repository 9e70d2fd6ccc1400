/**
 * Rewrites the few top-level fields Gravity owns in an upstream's chunk (id, model, service_tier) and
 * leaves every other byte as the upstream sent it: tool-call deltas, logprobs, `reasoning_content`,
 * annotations and fields no one has invented yet reach the client unchanged, and nothing is re-encoded.
 *
 * A small scanner over the top-level object, not a parse and re-serialise: it walks keys, skips values
 * (strings with escapes, nested objects and arrays), and stops as soon as it has found the fields the
 * parsed chunk says are present. Upstreams put `id` and `model` first, so the usual cost is a few dozen
 * characters.
 */

/** Replacement values, already JSON-encoded, by top-level key. */
export type OwnedFields = ReadonlyArray<readonly [key: string, encodedValue: string]>;

const quote = 34; // "
const backslash = 92;
const openBrace = 123;
const closeBrace = 125;
const openBracket = 91;
const closeBracket = 93;
const comma = 44;
const colon = 58;

function isSpace(code: number): boolean {
  return code === 32 || code === 10 || code === 13 || code === 9;
}

function skipSpace(json: string, index: number): number {
  while (index < json.length && isSpace(json.charCodeAt(index))) index++;
  return index;
}

/** Index just past the string starting at `index` (which holds its opening quote). */
function skipString(json: string, index: number): number {
  for (let i = index + 1; i < json.length; i++) {
    const code = json.charCodeAt(i);
    if (code === backslash) i++;
    else if (code === quote) return i + 1;
  }
  return json.length;
}

/** Index just past the value starting at `index`. */
function skipValue(json: string, index: number): number {
  const first = json.charCodeAt(index);
  if (first === quote) return skipString(json, index);
  if (first === openBrace || first === openBracket) {
    let depth = 0;
    for (let i = index; i < json.length; i++) {
      const code = json.charCodeAt(i);
      if (code === quote) i = skipString(json, i) - 1;
      else if (code === openBrace || code === openBracket) depth++;
      else if (code === closeBrace || code === closeBracket) {
        depth--;
        if (depth === 0) return i + 1;
      }
    }
    return json.length;
  }
  let i = index;
  while (i < json.length) {
    const code = json.charCodeAt(i);
    if (code === comma || code === closeBrace || code === closeBracket || isSpace(code)) break;
    i++;
  }
  return i;
}

/**
 * `json` with each owned field's value replaced; an owned field the chunk lacks (`present` says which it
 * has) is added first in the object. Returns `json` unchanged if it is not an object.
 */
export function rewriteOwnedFields(
  json: string,
  fields: OwnedFields,
  present: (key: string) => boolean,
): string {
  let start = skipSpace(json, 0);
  if (json.charCodeAt(start) !== openBrace) return json;
  start++;
  let missing = 0;
  let prefix = '';
  for (const [key, value] of fields) {
    if (present(key)) missing++;
    else prefix += `"${key}":${value},`;
  }
  // Spans to replace, in order of appearance: [from, to, replacement].
  const spans: Array<[number, number, string]> = [];
  let index = start;
  while (missing > 0 && index < json.length) {
    index = skipSpace(json, index);
    if (json.charCodeAt(index) !== quote) break;
    const keyEnd = skipString(json, index);
    const rawKey = json.slice(index + 1, keyEnd - 1);
    const key = rawKey.includes('\\') ? (JSON.parse(`"${rawKey}"`) as string) : rawKey;
    index = skipSpace(json, keyEnd);
    if (json.charCodeAt(index) !== colon) break;
    const valueStart = skipSpace(json, index + 1);
    const valueEnd = skipValue(json, valueStart);
    for (const [owned, value] of fields) {
      if (owned === key) {
        spans.push([valueStart, valueEnd, value]);
        missing--;
        break;
      }
    }
    index = skipSpace(json, valueEnd);
    if (json.charCodeAt(index) === comma) index++;
  }
  if (spans.length === 0 && prefix === '') return json;
  // An empty object gets no trailing comma after the added fields.
  if (prefix !== '' && json.charCodeAt(skipSpace(json, start)) === closeBrace) prefix = prefix.slice(0, -1);
  let out = json.slice(0, start) + prefix;
  let from = start;
  for (const [spanStart, spanEnd, value] of spans) {
    out += json.slice(from, spanStart) + value;
    from = spanEnd;
  }
  return out + json.slice(from);
}

/**
 * Where the value of the top-level `key` lies in `json`: [start, end), or null when the object has no
 * such key (or `json` is not an object). For rewriting inside a nested object (a Responses event's
 * `response`) without parsing the rest.
 */
export function topLevelValueSpan(json: string, key: string): [start: number, end: number] | null {
  let index = skipSpace(json, 0);
  if (json.charCodeAt(index) !== openBrace) return null;
  index++;
  while (index < json.length) {
    index = skipSpace(json, index);
    if (json.charCodeAt(index) !== quote) return null;
    const keyEnd = skipString(json, index);
    const rawKey = json.slice(index + 1, keyEnd - 1);
    const found = (rawKey.includes('\\') ? (JSON.parse(`"${rawKey}"`) as string) : rawKey) === key;
    index = skipSpace(json, keyEnd);
    if (json.charCodeAt(index) !== colon) return null;
    const valueStart = skipSpace(json, index + 1);
    const valueEnd = skipValue(json, valueStart);
    if (found) return [valueStart, valueEnd];
    index = skipSpace(json, valueEnd);
    if (json.charCodeAt(index) === comma) index++;
  }
  return null;
}
