import { errors, type GravityError } from './errors.js';

/**
 * Request features: what a request asks of an engine beyond plain text generation, named by the
 * parameter that asks for it, so that an engine or a routing decision that cannot serve one can say which
 * (`Unsupported parameter: 'tools' …`). The parser lists a request's features; engines declare the ones
 * they serve (EngineAdapter.servedFeatures); routing's `serves-features` filter matches the two.
 *
 * Parameters that change nothing about what comes back (user, metadata, prompt_cache_key,
 * safety_identifier, store: false) are not features: every engine accepts them.
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
} as const;

/** The parameter a feature stands for, as a client wrote it (for error messages). */
export function featureParameter(feature: string): string {
  if (feature === requestFeatures.tokenPrompt || feature === requestFeatures.promptArray) return 'prompt';
  return feature;
}

/** The first of `features` an engine serving `served` cannot serve, or null. */
export function firstUnservedFeature(
  features: readonly string[] | undefined,
  served: ReadonlySet<string> | undefined,
): string | null {
  if (!features || !served) return null;
  for (const feature of features) if (!served.has(feature)) return feature;
  return null;
}

const featureDescriptions: Partial<Record<string, string>> = {
  [requestFeatures.imageInput]: 'image inputs',
  [requestFeatures.audioInput]: 'audio inputs',
  [requestFeatures.fileInput]: 'file inputs',
  [requestFeatures.tokenPrompt]: 'prompts given as token ids',
  [requestFeatures.promptArray]: 'several prompts in one request',
};

/** The 400 for a feature that the engines able to take a request cannot serve. */
export function unservedFeatureError(feature: string, engines: string): GravityError {
  // Not a parameter but the endpoint itself: the model is the thing to change.
  if (feature === requestFeatures.embeddings) return errors.embeddingsNotServed(engines);
  const what = featureDescriptions[feature];
  return errors.unsupportedParameter(
    featureParameter(feature),
    `${what ? `(${what}) ` : ''}is not served by ${engines}. ` +
      'See docs/openai-compatibility.md for what each engine serves.',
  );
}
