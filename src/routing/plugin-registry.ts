import { contextFitsFilter } from './filters/context-fits-filter.js';
import { healthyFilter } from './filters/healthy-filter.js';
import { residencyFilter } from './filters/residency-filter.js';
import { servesFeaturesFilter } from './filters/serves-features-filter.js';
import { maxScorePicker } from './pickers/max-score-picker.js';
import { randomPicker } from './pickers/random-picker.js';
import { roundRobinPicker } from './pickers/round-robin-picker.js';
import type { RegisteredPlugin, ReplicaFilter, ReplicaPicker, ReplicaScorer } from './routing-plugin.js';
import { costScorer, energyScorer } from './scorers/cost-scorer.js';
import { kvCacheScorer } from './scorers/kv-cache-scorer.js';
import { latencyScorer } from './scorers/latency-scorer.js';
import { prefixAffinityScorer } from './scorers/prefix-affinity-scorer.js';
import { prefixHashScorer } from './scorers/prefix-hash-scorer.js';
import { queueDepthScorer } from './scorers/queue-depth-scorer.js';

/** Every routing plugin by its type name. A new plugin registers here; profiles name it in config. */
function byType<Definition extends { type: string }>(...definitions: Definition[]) {
  return new Map(definitions.map((definition) => [definition.type, definition]));
}

export const filterPlugins: ReadonlyMap<string, RegisteredPlugin<ReplicaFilter>> = byType<
  RegisteredPlugin<ReplicaFilter>
>(healthyFilter, contextFitsFilter, residencyFilter, servesFeaturesFilter);

export const scorerPlugins: ReadonlyMap<string, RegisteredPlugin<ReplicaScorer>> = byType<
  RegisteredPlugin<ReplicaScorer>
>(
  queueDepthScorer,
  kvCacheScorer,
  latencyScorer,
  prefixAffinityScorer,
  prefixHashScorer,
  costScorer,
  energyScorer,
);

export const pickerPlugins: ReadonlyMap<string, RegisteredPlugin<ReplicaPicker>> = byType<
  RegisteredPlugin<ReplicaPicker>
>(maxScorePicker, roundRobinPicker, randomPicker);
