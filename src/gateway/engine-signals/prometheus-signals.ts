/**
 * Queue and KV figures read from an engine's Prometheus text exposition. Names follow vLLM
 * (`vllm:num_requests_waiting`, `vllm:num_requests_running`, `vllm:kv_cache_usage_perc`, older
 * `vllm:gpu_cache_usage_perc`) and SGLang (`sglang:num_queue_reqs`, `sglang:num_running_reqs`,
 * `sglang:token_usage`) and llama.cpp's server started with `--metrics` (`llamacpp:requests_deferred`,
 * `llamacpp:requests_processing`, and `llamacpp:kv_cache_usage_ratio` from the builds that still export
 * it; `llamacpp:kv_cache_tokens` is not read, being tokens without the capacity to divide them by).
 * Parsed leniently: unknown lines, comments and malformed values are skipped, and
 * series with several label sets (one per model or engine) are summed (queues) or averaged (KV use).
 */
export interface EngineSignals {
  waitingRequests: number | null;
  runningRequests: number | null;
  kvUsedFraction: number | null;
}

const waitingNames = new Set([
  'vllm:num_requests_waiting',
  'sglang:num_queue_reqs',
  'llamacpp:requests_deferred',
]);
const runningNames = new Set([
  'vllm:num_requests_running',
  'sglang:num_running_reqs',
  'llamacpp:requests_processing',
]);
const kvNames = new Set([
  'vllm:kv_cache_usage_perc',
  'vllm:gpu_cache_usage_perc',
  'sglang:token_usage',
  'llamacpp:kv_cache_usage_ratio',
]);

export function parseEngineSignals(text: string): EngineSignals {
  let waiting: number | null = null;
  let running: number | null = null;
  let kvSum = 0;
  let kvCount = 0;
  for (const line of text.split('\n')) {
    if (line.length === 0 || line.charCodeAt(0) === 35 /* # */) continue;
    const nameEnd = line.search(/[{ ]/);
    if (nameEnd <= 0) continue;
    const name = line.slice(0, nameEnd);
    const isWaiting = waitingNames.has(name);
    const isRunning = runningNames.has(name);
    const isKv = kvNames.has(name);
    if (!isWaiting && !isRunning && !isKv) continue;
    const afterLabels = line[nameEnd] === '{' ? line.indexOf('}', nameEnd) + 1 : nameEnd;
    if (afterLabels <= 0) continue;
    const value = Number.parseFloat(line.slice(afterLabels).trim().split(' ')[0] ?? '');
    if (!Number.isFinite(value)) continue;
    if (isWaiting) waiting = (waiting ?? 0) + value;
    else if (isRunning) running = (running ?? 0) + value;
    else {
      kvSum += value;
      kvCount++;
    }
  }
  return {
    waitingRequests: waiting,
    runningRequests: running,
    kvUsedFraction: kvCount > 0 ? Math.min(1, Math.max(0, kvSum / kvCount)) : null,
  };
}
