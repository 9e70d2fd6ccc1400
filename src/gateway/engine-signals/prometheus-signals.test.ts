import { describe, expect, it } from 'vitest';
import { parseEngineSignals } from './prometheus-signals.js';

describe('engine signals', () => {
  it('reads vLLM and SGLang queue and KV figures from Prometheus text', () => {
    expect(
      parseEngineSignals(
        [
          '# HELP vllm:num_requests_waiting waiting',
          'vllm:num_requests_waiting{model_name="m",engine="0"} 3',
          'vllm:num_requests_waiting{model_name="m",engine="1"} 2',
          'vllm:num_requests_running{model_name="m"} 7.0',
          'vllm:kv_cache_usage_perc{model_name="m"} 0.25',
          'vllm:kv_cache_usage_perc{model_name="m"} 0.75',
          'garbage line',
        ].join('\n'),
      ),
    ).toEqual({ waitingRequests: 5, runningRequests: 7, kvUsedFraction: 0.5 });
    expect(
      parseEngineSignals('sglang:num_queue_reqs 4\nsglang:num_running_reqs 1\nsglang:token_usage 0.1'),
    ).toEqual({
      waitingRequests: 4,
      runningRequests: 1,
      kvUsedFraction: 0.1,
    });
  });

  it("reads a llama.cpp server's queue, running requests and KV use (llama-server --metrics)", () => {
    // As llama-server exposes them: no labels, HELP and TYPE lines, counters the parser ignores.
    const exposition = [
      '# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.',
      '# TYPE llamacpp:prompt_tokens_total counter',
      'llamacpp:prompt_tokens_total 6886',
      '# HELP llamacpp:kv_cache_usage_ratio KV-cache usage. 1 means 100 percent usage.',
      '# TYPE llamacpp:kv_cache_usage_ratio gauge',
      'llamacpp:kv_cache_usage_ratio 0.375',
      '# TYPE llamacpp:kv_cache_tokens gauge',
      'llamacpp:kv_cache_tokens 1536',
      '# HELP llamacpp:requests_processing Number of requests processing.',
      '# TYPE llamacpp:requests_processing gauge',
      'llamacpp:requests_processing 2',
      '# HELP llamacpp:requests_deferred Number of requests deferred.',
      '# TYPE llamacpp:requests_deferred gauge',
      'llamacpp:requests_deferred 5',
    ].join('\n');
    expect(parseEngineSignals(exposition)).toEqual({
      waitingRequests: 5,
      runningRequests: 2,
      kvUsedFraction: 0.375,
    });
    // Recent builds dropped the KV gauges: the queue figures still count, KV use is unknown.
    expect(parseEngineSignals('llamacpp:requests_processing 1\nllamacpp:requests_deferred 0\n')).toEqual({
      waitingRequests: 0,
      runningRequests: 1,
      kvUsedFraction: null,
    });
  });
});
