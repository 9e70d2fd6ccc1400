import { writeFileSync } from 'node:fs';
import path from 'node:path';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { modelProfileFromGguf } from '../performance-model/model-profiles.js';
import { loadScenario, ScenarioError } from '../simulator/load-scenario.js';
import {
  type CapacityPlan,
  candidateLabel,
  PlanError,
  type PlanProgressEvent,
  planCandidates,
  planCapacity,
} from '../simulator/plan/capacity-planner.js';
import { formatCapacityPlan } from '../simulator/plan/plan-report.js';
import { renderHtmlReport } from '../simulator/report/html-report.js';
import { readLedgerOrExit } from './sim-command.js';

export function registerPlanCommand(program: Command): void {
  program
    .command('plan')
    .description(
      "Find the cheapest fleet meeting every tier's SLO: simulates each candidate in the scenario's plan section at growing replica counts",
    )
    .argument('<scenario>', 'scenario YAML with a plan section (see docs/simulator.md)')
    .option('--json <file>', 'write the plan, with every probe, as JSON')
    .option('--html <file>', "write a self-contained HTML report of the feasible candidates' probes")
    .option('--quiet', 'no progress on stderr')
    .action(async (scenarioPath: string, options) => {
      let scenario: ReturnType<typeof loadScenario>;
      let candidateCount: number;
      try {
        scenario = loadScenario(scenarioPath);
        candidateCount = planCandidates(scenario).length;
      } catch (error) {
        if (!(error instanceof ScenarioError || error instanceof PlanError)) throw error;
        process.stderr.write(`gravity: ${error.message}\n`);
        process.exit(2);
      }
      if (scenario.sweep && !options.quiet)
        process.stderr.write(
          "gravity: plan ignores the scenario's sweep; it searches the plan section instead\n",
        );
      const modelProfile = scenario.fleet.model.endsWith('.gguf')
        ? await modelProfileFromGguf(path.resolve(path.dirname(scenarioPath), scenario.fleet.model))
        : undefined;

      const ledgerReplay = await readLedgerOrExit(scenario);
      const progress = createProgress(candidateCount, options.quiet === true);
      let plan: CapacityPlan;
      try {
        plan = planCapacity(scenario, {
          ...(modelProfile && { modelProfile }),
          ...(ledgerReplay && { ledgerReplay }),
          onProgress: progress.onEvent,
          onProbeProgress: progress.onRequests,
        });
      } finally {
        progress.stop();
        ledgerReplay?.close();
      }

      const command = `gravity plan ${process.argv.slice(3).join(' ')}`.trim();
      process.stdout.write(`${formatCapacityPlan(plan)}\n`);
      if (options.json) writeFileSync(options.json, `${JSON.stringify({ command, plan }, null, 2)}\n`);
      if (options.html) {
        // The winners' probes show how each feasible fleet behaves around its size; with no winner, every probe.
        const outcomes = plan.feasible.length > 0 ? plan.feasible : plan.infeasible;
        const results = outcomes.flatMap((outcome) =>
          [...outcome.probes].sort((a, b) => a.replicas - b.replicas).map((probe) => probe.result),
        );
        writeFileSync(
          options.html,
          renderHtmlReport(results, {
            title: `gravity plan: ${scenario.name}`,
            command,
            generatedAt: new Date().toISOString(),
          }),
        );
      }
      if (plan.feasible.length === 0) process.exitCode = 1;
    });
}

/**
 * Plans run many simulations: a bar on stderr for terminals (candidates done, the probe running and its
 * requests), a line per candidate otherwise so logs stay readable.
 */
function createProgress(candidates: number, quiet: boolean) {
  const silent = { onEvent: () => {}, onRequests: () => {}, stop: () => {} };
  if (quiet) return silent;
  if (!process.stderr.isTTY) {
    return {
      ...silent,
      onEvent: (event: PlanProgressEvent) => {
        if (event.kind !== 'candidate') return;
        const { outcome } = event;
        const verdict =
          outcome.status === 'feasible'
            ? `${outcome.replicas} replica(s), $${outcome.usdPerHour.toFixed(2)}/h`
            : outcome.reason;
        process.stderr.write(
          `candidate ${event.candidateIndex + 1}/${candidates} ${candidateLabel(outcome.candidate)}: ${verdict} (${outcome.probes.length} probe(s))\n`,
        );
      },
    };
  }
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: 'candidates [{bar}] {value}/{total} | {candidate} | {replicas} replicas: {requests} requests',
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(candidates, 0, { candidate: '', replicas: '–', requests: '' });
  let done = 0;
  return {
    onEvent: (event: PlanProgressEvent) => {
      if (event.kind === 'probe') {
        bar.update(done, {
          candidate: candidateLabel(event.candidate),
          replicas: event.replicas,
          requests: '0',
        });
      } else {
        done = event.candidateIndex + 1;
        bar.update(done);
      }
    },
    onRequests: (completed: number, expected: number | null) =>
      bar.update(done, { requests: expected === null ? String(completed) : `${completed}/${expected}` }),
    stop: () => bar.stop(),
  };
}
