// Gravity's layering, checked by `npm run lint:deps` (dependency-cruiser).
//
// A request flows up through the stages below; each stage may import the stages beneath it and never one
// above it, so every stage can be understood, tested and replaced with only what is under it in view. The
// table is the single source of the order: the rules are generated from it, one per stage, so adding a
// stage means adding it to the table. A stage folder that does not exist yet simply has its rule ready.

/** Stage folders under src/, lowest first. Stages on one line are peers and do not import each other. */
const stagesBottomUp = [
  // shared vocabulary: request, clock, errors, tiers, stream parts, seeded randomness, defaults
  ['core'],
  // the engine performance model (steps, KV cache, the engine's own queue order) that the emulated
  // engine, the schedulers' predictions and the simulator share
  ['performance-model'],
  // pure policies on a Clock and plain state: they must run unchanged in the simulator
  ['scheduling', 'routing'],
  // the clock-free fleet state machine that wires routing, scheduling, feedback and retries
  ['fleet'],
  // engine adapters behind the versioned contract, each folder a plugin with its own definition
  ['engines'],
  // what meters (reads what engines declare about their hardware and power), admits, and drives the
  // fleet core on the wall clock over live engines (the gateway), and traces requests (telemetry)
  ['metering', 'admission', 'gateway', 'telemetry'],
  // begin → admit → execute → finish, once for every entry point
  ['pipeline'],
  // the OpenAI HTTP edge: wire format, schemas, SSE
  ['api'],
  // the Responses API: requests translated onto the edge's chat request and rendered as Response objects
  // and events, and the store of responses behind previous_response_id
  ['responses'],
  // entry points built on the edge's wire format (batch lines are answered as the edge would answer;
  // the Endpoint Picker parses bodies with the edge's parsers and places requests through the pipeline
  // and the gateway, for Envoy to forward), and the simulator, the fleet core's virtual-clock driver
  ['batch', 'epp', 'simulator'],
  // the web dashboard: its routes on the edge, and the page (client/), which reads the simulator's result
  // types to open a `gravity sim`/`gravity plan` file
  ['dashboard'],
  // Gravity's config file: composes the stages' config slices, so it sits above them and only the
  // composition roots (server, cli) read it; a stage gets its own settings passed in.
  ['config'],
  // the one place that wires the stages into a running Gravity
  ['server'],
  // one file per command
  ['cli'],
];

const allStages = stagesBottomUp.flat();
const folders = (names) => `^src/(${names.join('|')})/`;

/** One rule per stage: it may import lower stages and itself, but not its peers or any stage above it. */
const layerRules = stagesBottomUp.flatMap((peers, level) => {
  const above = stagesBottomUp.slice(level + 1).flat();
  return peers.map((stage) => {
    const forbidden = [...peers.filter((peer) => peer !== stage), ...above];
    return {
      name: `layer-${stage}`,
      comment:
        `src/${stage} may import only the stages below it (and test/support from its tests): importing a ` +
        `peer or a higher stage (${forbidden.join(', ')}) makes the layers depend on each other both ways.`,
      severity: 'error',
      from: { path: folders([stage]) },
      to: { path: folders(forbidden) },
    };
  });
});

export default {
  forbidden: [
    {
      name: 'no-circular',
      comment:
        'No import cycle anywhere, type-only imports included: a cycle welds its modules (and their stages) ' +
        'into one piece that cannot be loaded, tested or reasoned about separately.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    ...layerRules,
    {
      name: 'stage-not-in-layer-table',
      comment:
        'Every folder under src/ is a stage listed in .dependency-cruiser.mjs; a folder missing from the ' +
        'table would escape the layer rules unnoticed.',
      severity: 'error',
      from: { path: '^src/', pathNot: folders(allStages) },
      to: {},
    },
    {
      name: 'production-code-not-to-tests',
      comment:
        'Code that ships must not import test files, test/ or bench/: they are not built, and a test helper ' +
        'in the serving path is a stub in production.',
      severity: 'error',
      from: { path: '^src/', pathNot: '\\.test\\.ts$' },
      to: { path: ['^test/', '^bench/', '\\.test\\.ts$'] },
    },
    {
      name: 'production-code-not-to-dev-dependencies',
      comment:
        'Code that ships must import only packages in dependencies: devDependencies are absent from a ' +
        'production install (npm ci --omit=dev), so such an import fails only there.',
      severity: 'error',
      from: { path: '^src/', pathNot: '\\.test\\.ts$' },
      to: { dependencyTypes: ['npm-dev'] },
    },
    {
      name: 'not-to-unresolvable',
      comment: 'An import that resolves to no file or package is a typo or a missing dependency.',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    // Count `import type` too: a type dependency on a higher stage is still a dependency on its design.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    doNotFollow: { path: 'node_modules' },
    exclude: { path: ['^dist/', '/results/'] },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      mainFields: ['module', 'main', 'types', 'typings'],
    },
    reporterOptions: {
      text: { highlightFocused: true },
    },
  },
};
