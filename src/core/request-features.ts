import { errors, type GravityError } from './errors.js';

/**
 * Request features: what a request asks of an engine beyond plain text generation, named by the
 * parameter that asks for it, so that an engine or a routing decision that cannot serve one can say which
 * (`Unsupported parameter: 'tools' …`). The parser lists a request's features; engines declare the ones
 * they serve (EngineAdapter.servedFeatures); routing's `serves-features` filter matches the two.
 *
 * Parameters that change nothing about what comes back (user, metadata, prompt_cache_key,
 * safety_identifier, store: false) are not features: every engine accepts them.
 *
 * Which engine serves what, one rule everywhere (`servesFeature`: the engines' own check, routing's
 * `serves-features` filter, the fleet core on both clocks, the gateway's 400 and `/v1/models`): a feature
 * is served when `servedFeatures` (an allow-list; absent: all) lets it in and `unservedFeatures` (a
 * deny-list; absent: none) does not name it. Entries of either are exact names or `<family>.*`, which
 * matches every feature of that family (`tools.*`: `tools.web_search`, `tools.mcp` …), so an engine can
 * refuse a family whose members Gravity cannot list in advance.
 */
export const requestFeatures = {
  tools: 'tools',
  toolChoice: 'tool_choice',
  functions: 'functions',
  responseFormat: 'response_format',
  logprobs: 'logprobs',
  n: 'n',
  presencePenalty: 'presence_penalty',
  frequencyPenalty: 'frequency_penalty',
  logitBias: 'logit_bias',
  /** Content parts other than text. */
  imageInput: 'image_url',
  audioInput: 'input_audio',
  fileInput: 'file',
  /** Completions: token ids instead of text, and several prompts in one request. */
  tokenPrompt: 'prompt.tokens',
  promptArray: 'prompt.array',
  echo: 'echo',
  suffix: 'suffix',
  bestOf: 'best_of',
  /** Output other than text, and OpenAI-only behaviour. */
  audioOutput: 'audio',
  modalities: 'modalities',
  prediction: 'prediction',
  reasoningEffort: 'reasoning_effort',
  verbosity: 'verbosity',
  webSearch: 'web_search_options',
  store: 'store',
  /** Sampling extras common to vLLM and llama.cpp's server. */
  topK: 'top_k',
  minP: 'min_p',
  repetitionPenalty: 'repetition_penalty',
  /**
   * Embeddings (`/v1/embeddings`): every embeddings request lists `embeddings`, so an engine that cannot
   * embed (it leaves the feature out of `servedFeatures`) is kept off them by routing and refuses them
   * with a 400; `dimensions` (shortened vectors) is served only by engines that can shorten them.
   */
  embeddings: 'embeddings',
  dimensions: 'dimensions',
  /** Chat's `custom` tools (free-form input): upstreams relay them; Gravity's own engines do not run them. */
  customTools: 'custom_tools',
  /** Responses API: the most built-in tool calls a response may make. */
  maxToolCalls: 'max_tool_calls',
} as const;

/**
 * Features only an engine that serves `/v1/responses` natively can serve (an upstream with its own
 * `/v1/responses`): each names the parameter and the value, in families, because the API keeps adding
 * values. Chat has no shape for any of them, so an engine that translates a Responses request onto chat
 * lists `responsesNativeFeatures` among its `unservedFeatures` (or leaves them out of its allow-list).
 */
export const responsesFeatures = {
  /** A built-in tool in `tools` (`web_search`, `file_search`, `mcp`, `custom` …). */
  builtInTool: (type: string) => `tools.${type}`,
  /** A `tool_choice` that forces a built-in tool. */
  builtInToolChoice: (type: string) => `tool_choice.${type}`,
  /** An input item chat has no shape for (`computer_call_output`, `item_reference` …). */
  inputItem: (type: string) => `input.${type}`,
  /** An `include` value naming output Gravity's translation does not produce. */
  include: (value: string) => `include.${value}`,
} as const;

/** The families above and `max_tool_calls`, as `unservedFeatures` entries. */
export const responsesNativeFeatures: ReadonlySet<string> = new Set([
  'tools.*',
  'tool_choice.*',
  'input.*',
  'include.*',
  requestFeatures.maxToolCalls,
]);

/** What an engine or replica declares it serves (engine-adapter.ts, routing-policy.ts, fleet-core.ts). */
export interface FeatureDeclaration {
  /** Allow-list; absent or null: every feature. */
  readonly servedFeatures?: ReadonlySet<string> | null | undefined;
  /** Deny-list, applied after the allow-list; absent or null: none. */
  readonly unservedFeatures?: ReadonlySet<string> | null | undefined;
}

/** Whether `entries` names `feature` exactly or by its family (`<family>.*`). */
function names(entries: ReadonlySet<string>, feature: string): boolean {
  if (entries.has(feature)) return true;
  const dot = feature.indexOf('.');
  return dot > 0 && entries.has(`${feature.slice(0, dot)}.*`);
}

/** The one rule: allowed by `servedFeatures` (absent: all) and not denied by `unservedFeatures`. */
export function servesFeature(declaration: FeatureDeclaration, feature: string): boolean {
  const { servedFeatures, unservedFeatures } = declaration;
  if (servedFeatures && !names(servedFeatures, feature)) return false;
  return !(unservedFeatures && names(unservedFeatures, feature));
}

/** Feature families named `<parameter>.<value>`: the parameter is the part before the dot. */
const familyParameters = new Set(['prompt', 'tools', 'tool_choice', 'input', 'include']);

/** The parameter a feature stands for, as a client wrote it (for error messages). */
export function featureParameter(feature: string): string {
  if (feature === requestFeatures.customTools) return 'tools';
  const dot = feature.indexOf('.');
  if (dot > 0 && familyParameters.has(feature.slice(0, dot))) return feature.slice(0, dot);
  return feature;
}

/** The first of `features` an engine or replica declaring `declaration` cannot serve, or null. */
export function firstUnservedFeature(
  features: readonly string[] | undefined,
  declaration: FeatureDeclaration,
): string | null {
  if (!features || (!declaration.servedFeatures && !declaration.unservedFeatures)) return null;
  for (const feature of features) if (!servesFeature(declaration, feature)) return feature;
  return null;
}

const featureDescriptions: Partial<Record<string, string>> = {
  [requestFeatures.imageInput]: 'image inputs',
  [requestFeatures.audioInput]: 'audio inputs',
  [requestFeatures.fileInput]: 'file inputs',
  [requestFeatures.tokenPrompt]: 'prompts given as token ids',
  [requestFeatures.promptArray]: 'several prompts in one request',
  [requestFeatures.customTools]: 'custom tools',
};

/** What a feature of a `<parameter>.<value>` family asks for, in words. */
function describeFeature(feature: string): string | undefined {
  const described = featureDescriptions[feature];
  if (described) return described;
  const dot = feature.indexOf('.');
  const value = feature.slice(dot + 1);
  switch (feature.slice(0, dot)) {
    case 'tools':
    case 'tool_choice':
      return `built-in tool '${value}'`;
    case 'input':
      return `input item '${value}'`;
    case 'include':
      return `'${value}'`;
    default:
      return undefined;
  }
}

/** The 400 for a feature that the engines able to take a request cannot serve. */
export function unservedFeatureError(feature: string, engines: string): GravityError {
  // Not a parameter but the endpoint itself: the model is the thing to change.
  if (feature === requestFeatures.embeddings) return errors.embeddingsNotServed(engines);
  const what = describeFeature(feature);
  return errors.unsupportedParameter(
    featureParameter(feature),
    `${what ? `(${what}) ` : ''}is not served by ${engines}. ` +
      'See docs/openai-compatibility.md for what each engine serves.',
  );
}
