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
});
