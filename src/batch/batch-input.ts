/**
 * Reads a batch input file (JSONL: one request per line) as OpenAI defines it:
 * `{"custom_id": "...", "method": "POST", "url": "/v1/chat/completions", "body": {...}}`.
 *
 * Two kinds of problem, kept apart on purpose:
 * - a malformed line (bad JSON, no custom_id, wrong method or url, no body) is that line's failure: it is
 *   reported in the batch's error file and the other lines still run;
 * - a problem of the file as a whole (no requests, too many, a custom_id used twice, so outputs could not
 *   be matched to inputs) fails the batch at validation, listed in the batch's `errors`, as OpenAI does.
 *
 * The body itself is not checked here: it is validated when the line runs, by the same parser the HTTP
 * edge uses, and a bad body comes back as that line's 400 response.
 */

export const batchEndpoints = [
  '/v1/chat/completions',
  '/v1/completions',
  '/v1/embeddings',
  '/v1/responses',
] as const;
export type BatchEndpoint = (typeof batchEndpoints)[number];

/** A well-formed request line. `lineNumber` (1-based, in the file) identifies the line for good. */
export interface BatchInputLine {
  lineNumber: number;
  customId: string;
  body: Record<string, unknown>;
}

/** A line that cannot run, reported in the error file as `{custom_id, response: null, error}`. */
export interface MalformedLine {
  lineNumber: number;
  customId: string | null;
  code: string;
  message: string;
}

/** OpenAI's batch `errors.data[]` entry: why the batch as a whole failed validation. */
export interface BatchValidationError {
  code: string;
  message: string;
  param: string | null;
  line: number | null;
}

export type ParsedBatchInput =
  | { ok: true; lines: BatchInputLine[]; malformed: MalformedLine[] }
  | { ok: false; errors: BatchValidationError[] };

/** At most this many validation errors are listed on a failed batch. */
const maxListedErrors = 100;

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/**
 * Checks one line. Returns the request, or why the line cannot run (with its custom_id when readable,
 * so the error file still says which request failed).
 */
function parseLine(
  text: string,
  lineNumber: number,
  endpoint: BatchEndpoint,
): BatchInputLine | MalformedLine {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return {
      lineNumber,
      customId: null,
      code: 'invalid_json_line',
      message: `Line ${lineNumber} is not valid JSON (${(error as Error).message}).`,
    };
  }
  if (!isObject(value)) {
    return {
      lineNumber,
      customId: null,
      code: 'invalid_request',
      message: `Line ${lineNumber} must be a JSON object with custom_id, method, url and body.`,
    };
  }
  const customId = typeof value.custom_id === 'string' && value.custom_id !== '' ? value.custom_id : null;
  const malformed = (code: string, message: string): MalformedLine => ({
    lineNumber,
    customId,
    code,
    message,
  });
  if (customId === null)
    return malformed(
      'missing_required_parameter',
      `Line ${lineNumber} has no custom_id (a non-empty string).`,
    );
  for (const key of Object.keys(value)) {
    if (!['custom_id', 'method', 'url', 'body'].includes(key))
      return malformed('unrecognized_argument', `Line ${lineNumber} has an unknown field '${key}'.`);
  }
  if (value.method !== 'POST')
    return malformed('invalid_method', `Line ${lineNumber}: method must be "POST".`);
  if (value.url !== endpoint) {
    return malformed(
      'invalid_url',
      `Line ${lineNumber}: url ${JSON.stringify(value.url ?? null)} does not match the batch's endpoint ${endpoint}.`,
    );
  }
  if (!isObject(value.body))
    return malformed('invalid_body', `Line ${lineNumber}: body must be a JSON object (the request).`);
  return { lineNumber, customId, body: value.body };
}

/** Splits and checks the whole file; blank lines are skipped (a trailing newline is usual). */
export function parseBatchInput(
  text: string,
  endpoint: BatchEndpoint,
  options: { maxLines: number },
): ParsedBatchInput {
  const lines: BatchInputLine[] = [];
  const malformed: MalformedLine[] = [];
  const physicalLines = text.split('\n');
  for (let index = 0; index < physicalLines.length; index++) {
    const raw = (physicalLines[index] as string).trim();
    if (raw === '') continue;
    const parsed = parseLine(raw, index + 1, endpoint);
    if ('body' in parsed) lines.push(parsed);
    else malformed.push(parsed);
  }

  const total = lines.length + malformed.length;
  if (total === 0) {
    return {
      ok: false,
      errors: [{ code: 'empty_file', message: 'The input file has no requests.', param: null, line: null }],
    };
  }
  if (total > options.maxLines) {
    return {
      ok: false,
      errors: [
        {
          code: 'too_many_requests',
          message: `The input file has ${total} requests; a batch takes at most ${options.maxLines}.`,
          param: null,
          line: null,
        },
      ],
    };
  }

  // Outputs are matched to inputs by custom_id, so a repeated one fails the batch.
  const firstLineOf = new Map<string, number>();
  const errors: BatchValidationError[] = [];
  const everyLine = [...lines, ...malformed].sort((a, b) => a.lineNumber - b.lineNumber);
  for (const line of everyLine) {
    if (line.customId === null) continue;
    const first = firstLineOf.get(line.customId);
    if (first === undefined) {
      firstLineOf.set(line.customId, line.lineNumber);
      continue;
    }
    if (errors.length < maxListedErrors) {
      errors.push({
        code: 'duplicate_custom_id',
        message: `The custom_id '${line.customId}' on line ${line.lineNumber} was already used on line ${first}; each request in a batch needs its own custom_id.`,
        param: 'custom_id',
        line: line.lineNumber,
      });
    }
  }
  if (errors.length > 0) return { ok: false, errors };
  return { ok: true, lines, malformed };
}
