import type { SeededRandom } from '../../core/seeded-random.js';
import { type PromptSegment, segmentBlockHashes } from '../../performance-model/block-hashes.js';
import type {
  ArrivalsConfig,
  LengthDistribution,
  RequestClass,
  SecondsDistribution,
} from '../scenario-schema.js';
import type { SimulatedClient, SimulatedRequest, WorkloadSource } from './workload-source.js';

export function sampleLength(distribution: LengthDistribution, random: SeededRandom): number {
  let value: number;
  let min = 1;
  let max = Number.MAX_SAFE_INTEGER;
  if ('fixed' in distribution) return distribution.fixed;
  if ('uniform' in distribution) {
    const [low, high] = distribution.uniform;
    return low + Math.floor(random.uniform() * (high - low + 1));
  }
  if ('lognormal' in distribution) {
    value = random.lognormal(distribution.lognormal.mean, distribution.lognormal.cv);
    ({ min, max } = distribution);
  } else {
    value = random.exponential(distribution.exponential.mean);
    ({ min, max } = distribution);
  }
  return Math.min(max, Math.max(min, Math.round(value)));
}

export function sampleSeconds(distribution: SecondsDistribution, random: SeededRandom): number {
  return typeof distribution === 'number' ? distribution : random.exponential(distribution.exponential.mean);
}

export interface SyntheticWorkloadOptions {
  arrivals: Extract<ArrivalsConfig, { process: 'poisson' | 'gamma' | 'closed-loop' }>;
  mix: readonly RequestClass[];
  /** Stop creating requests after this many… */
  maxRequests: number;
  /** …or once arrivals pass this time. */
  endMs: number;
  /** The model's context window: a session ends before its prompt would overflow it. */
  contextTokens: number;
  blockTokens: number;
  random: SeededRandom;
}

/**
 * Open-loop (Poisson or gamma arrivals) and closed-loop (a fixed number of users, each sending again
 * after its previous answer and a think time) workloads over a mix of request classes, with shared system
 * prompts and multi-turn sessions whose later turns carry the conversation so far.
 */
export class SyntheticWorkload implements WorkloadSource {
  private readonly cumulativeWeights: number[];
  private readonly arrivalRandom: SeededRandom;
  private readonly lengthRandom: SeededRandom;
  private readonly seedRandom: SeededRandom;
  /** Feature draws; their own stream, made only when a class has features, so other draws never shift. */
  private readonly featureRandom: SeededRandom | null;
  /** Each class's features as [name, share] pairs, read per request. */
  private readonly classFeatures: ReadonlyArray<ReadonlyArray<readonly [string, number]>>;
  private nextArrivalMs: number;
  private created = 0;
  /** Closed-loop users not yet started (they all start at time 0). */
  private unstartedUsers: number;
  readonly expectedRequests: number | null;

  constructor(private readonly options: SyntheticWorkloadOptions) {
    let total = 0;
    this.cumulativeWeights = options.mix.map((requestClass) => (total += requestClass.weight));
    this.arrivalRandom = options.random.fork('arrivals');
    this.lengthRandom = options.random.fork('lengths');
    this.seedRandom = options.random.fork('content');
    this.classFeatures = options.mix.map((requestClass) =>
      Object.entries(requestClass.features ?? {}).filter(([, share]) => share > 0),
    );
    this.featureRandom = this.classFeatures.some((features) => features.length > 0)
      ? options.random.fork('features')
      : null;
    this.unstartedUsers = options.arrivals.process === 'closed-loop' ? options.arrivals.concurrency : 0;
    this.nextArrivalMs = options.arrivals.process === 'closed-loop' ? 0 : this.interArrivalMs();
    this.expectedRequests = Number.isFinite(options.maxRequests) ? options.maxRequests : null;
  }

  private interArrivalMs(): number {
    const arrivals = this.options.arrivals;
    if (arrivals.process === 'poisson') return this.arrivalRandom.exponential(1000 / arrivals.ratePerSecond);
    if (arrivals.process === 'gamma') {
      // Gamma with mean 1/rate and coefficient of variation cv: shape 1/cv², scale mean·cv².
      const shape = 1 / (arrivals.cv * arrivals.cv);
      return this.arrivalRandom.gamma(shape, 1000 / arrivals.ratePerSecond / shape);
    }
    return 0;
  }

  private get exhausted(): boolean {
    return this.created >= this.options.maxRequests;
  }

  peekArrivalMs(): number {
    if (this.exhausted) return Number.POSITIVE_INFINITY;
    if (this.options.arrivals.process === 'closed-loop')
      return this.unstartedUsers > 0 ? 0 : Number.POSITIVE_INFINITY;
    return this.nextArrivalMs < this.options.endMs ? this.nextArrivalMs : Number.POSITIVE_INFINITY;
  }

  takeArrival(): SimulatedRequest {
    const atMs = this.peekArrivalMs();
    if (this.options.arrivals.process === 'closed-loop') this.unstartedUsers--;
    else this.nextArrivalMs += this.interArrivalMs();
    return this.startClient(atMs);
  }

  onComplete(request: SimulatedRequest, atMs: number): SimulatedRequest | null {
    const client = request.client;
    if (!client || this.exhausted) return null;
    const requestClass = this.options.mix[client.classIndex] as RequestClass;
    const thinkMs = 1000 * sampleSeconds(this.thinkTime(requestClass), this.arrivalRandom);
    const nextMs = atMs + thinkMs;
    if (nextMs >= this.options.endMs) return null;
    if (client.turnsLeft > 0) {
      // The answer joins the conversation, so the next turn's prompt starts with everything said so far.
      client.segments.push({ tokens: request.outputTokens, seed: request.outputSeed as number });
      const next = this.nextTurn(client, nextMs);
      if (next) return next;
    }
    if (this.options.arrivals.process !== 'closed-loop') return null;
    return this.startClient(nextMs); // a closed-loop user starts over
  }

  private thinkTime(requestClass: RequestClass): SecondsDistribution {
    if (requestClass.session) return requestClass.session.thinkSeconds;
    const arrivals = this.options.arrivals;
    return arrivals.process === 'closed-loop' ? arrivals.thinkSeconds : 0;
  }

  private startClient(atMs: number): SimulatedRequest {
    const classIndex = this.lengthRandom.weighted(this.cumulativeWeights);
    const requestClass = this.options.mix[classIndex] as RequestClass;
    const segments: PromptSegment[] = [];
    if (requestClass.sharedPrefix) {
      const group = Math.floor(this.lengthRandom.uniform() * requestClass.sharedPrefix.groups);
      // Seeds of shared prompts are fixed per class and group, so every request of the group agrees.
      segments.push({ tokens: requestClass.sharedPrefix.tokens, seed: 1_000_003 * (classIndex + 1) + group });
    }
    const turns = requestClass.session ? sampleLength(requestClass.session.turns, this.lengthRandom) : 1;
    const client: SimulatedClient = { segments, classIndex, turnsLeft: turns };
    // A first turn always fits: its input is clamped to the context window.
    return this.nextTurn(client, atMs) as SimulatedRequest;
  }

  /** The client's next request, or null when the conversation no longer fits the context window. */
  private nextTurn(client: SimulatedClient, atMs: number): SimulatedRequest | null {
    const requestClass = this.options.mix[client.classIndex] as RequestClass;
    let history = 0;
    for (const segment of client.segments) history += segment.tokens;
    const room = this.options.contextTokens - history - 1;
    if (room < 1) return null;
    const input = Math.min(sampleLength(requestClass.input, this.lengthRandom), room);
    const promptTokens = history + input;
    const output = Math.max(
      1,
      Math.min(
        sampleLength(requestClass.output, this.lengthRandom),
        this.options.contextTokens - promptTokens,
      ),
    );
    const isSession = requestClass.session !== undefined;
    const inputSegment = { tokens: input, seed: 2_000_000 + this.seedRandom.int() };
    client.turnsLeft--;
    let promptBlockHashes: number[] | null = null;
    if (isSession) {
      client.segments.push(inputSegment);
      promptBlockHashes = segmentBlockHashes(client.segments, this.options.blockTokens);
    } else if (client.segments.length > 0) {
      // A one-off request shares only its system prompt: the unique question's blocks can never hit.
      promptBlockHashes = segmentBlockHashes(client.segments, this.options.blockTokens);
    }
    const request: SimulatedRequest = {
      id: this.created++,
      arrivalMs: atMs,
      tenant: requestClass.tenant,
      tier: requestClass.tier,
      promptTokens,
      outputTokens: output,
      promptBlockHashes,
      outputSeed: isSession ? 3_000_000 + this.seedRandom.int() : null,
      client: isSession || this.options.arrivals.process === 'closed-loop' ? client : null,
    };
    const features = this.drawFeatures(client.classIndex);
    if (features) request.features = features;
    return request;
  }

  /** The features one request of the class uses, each drawn with its share; null for none. */
  private drawFeatures(classIndex: number): string[] | null {
    const random = this.featureRandom;
    const shares = this.classFeatures[classIndex] as ReadonlyArray<readonly [string, number]>;
    if (random === null || shares.length === 0) return null;
    const features: string[] = [];
    for (const [feature, share] of shares) if (random.uniform() < share) features.push(feature);
    return features.length > 0 ? features : null;
  }
}
