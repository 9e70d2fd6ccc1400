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

/** One top-level entry of an object, as `readEntry` found it. */
interface Entry {
  key: string;
  valueStart: number;
  valueEnd: number;
  /** Where the entry after it starts (past the comma). */
  next: number;
}

const emptyEntry = (): Entry => ({ key: '', valueStart: 0, valueEnd: 0, next: 0 });

/**
 * Reads the object entry at `index` (spaces before its key allowed) into `entry`. False at the end of
 * the object or at anything that is not a well-formed entry: the walk stops there.
 */
function readEntry(json: string, index: number, entry: Entry): boolean {
  const keyStart = skipSpace(json, index);
  if (json.charCodeAt(keyStart) !== quote) return false;
  const keyEnd = skipString(json, keyStart);
  const rawKey = json.slice(keyStart + 1, keyEnd - 1);
  entry.key = rawKey.includes('\\') ? (JSON.parse(`"${rawKey}"`) as string) : rawKey;
  const colonAt = skipSpace(json, keyEnd);
  if (json.charCodeAt(colonAt) !== colon) return false;
  entry.valueStart = skipSpace(json, colonAt + 1);
  entry.valueEnd = skipValue(json, entry.valueStart);
  const after = skipSpace(json, entry.valueEnd);
  entry.next = json.charCodeAt(after) === comma ? after + 1 : after;
  return true;
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
  const entry = emptyEntry();
  let index = start;
  while (missing > 0 && index < json.length && readEntry(json, index, entry)) {
    for (const [owned, value] of fields) {
      if (owned === entry.key) {
        spans.push([entry.valueStart, entry.valueEnd, value]);
        missing--;
        break;
      }
    }
    index = entry.next;
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
  const entry = emptyEntry();
  while (index < json.length && readEntry(json, index, entry)) {
    if (entry.key === key) return [entry.valueStart, entry.valueEnd];
    index = entry.next;
  }
  return null;
}
