import { writeFileSync } from 'node:fs';
import path from 'node:path';
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { modelProfileFromGguf } from '../performance-model/model-profiles.js';
import { ReplicaSpecError } from '../performance-model/replica-spec.js';
import { loadScenario, ScenarioError } from '../simulator/load-scenario.js';
import { renderHtmlReport } from '../simulator/report/html-report.js';
import { formatSimulationTable } from '../simulator/report/terminal-table.js';
import { runScenario } from '../simulator/run-scenario.js';
import type { Scenario } from '../simulator/scenario-schema.js';
import type { SimulationResult } from '../simulator/simulation-result.js';
import { expandSweep } from '../simulator/sweep.js';
import { type LedgerReplay, readScenarioLedger } from '../simulator/workload/ledger-replay.js';

function positiveInteger(value: string): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 1) throw new Error(`not a positive integer: '${value}'`);
  return parsed;
}

function integer(value: string): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed)) throw new Error(`not an integer: '${value}'`);
  return parsed;
}

export function registerSimCommand(program: Command): void {
  program
    .command('sim')
    .description(
      "Simulate a fleet on a virtual clock with the gateway's own routing and scheduling code: latency, goodput, $ and J per token",
    )
    .argument('<scenario>', 'scenario YAML (see scenarios/ and docs/simulator.md)')
    .option('--seed <n>', 'override the scenario seed', integer)
    .option('--requests <n>', 'override the number of requests', positiveInteger)
    .option('--json <file>', "write every run's results as JSON")
    .option('--html <file>', 'write a self-contained HTML report with charts')
    .option('--quiet', 'no table on stdout, no progress')
    .action(async (scenarioPath: string, options) => {
      let scenario: ReturnType<typeof loadScenario>;
      try {
        scenario = loadScenario(scenarioPath);
      } catch (error) {
        if (!(error instanceof ScenarioError)) throw error;
        process.stderr.write(`gravity: ${error.message}\n`);
        process.exit(2);
      }
      if (options.seed !== undefined) scenario.seed = options.seed;
      if (options.requests !== undefined) scenario.workload.requests = options.requests;
      const modelProfile = scenario.fleet.model.endsWith('.gguf')
        ? await modelProfileFromGguf(path.resolve(path.dirname(scenarioPath), scenario.fleet.model))
        : undefined;

      const ledgerReplay = await readLedgerOrExit(scenario);

      const points = expandSweep(scenario);
      const progress = createProgress(points.length, options.quiet === true);
      const results: SimulationResult[] = [];
      try {
        for (const [index, point] of points.entries()) {
          try {
            results.push(
              runScenario(scenario, point, {
                ...(modelProfile && { modelProfile }),
                ...(ledgerReplay && { ledgerReplay }),
                onProgress: (completed, expected) => progress.update(index, completed, expected),
              }),
            );
          } catch (error) {
            if (!(error instanceof ReplicaSpecError)) throw error;
            progress.stop();
            ledgerReplay?.close();
            process.stderr.write(`gravity: ${JSON.stringify(point)}: ${error.message}\n`);
            process.exit(2);
          }
        }
      } finally {
        ledgerReplay?.close();
      }
      progress.stop();

      const command = `gravity sim ${process.argv.slice(3).join(' ')}`.trim();
      if (!options.quiet) {
        process.stdout.write(`${formatSimulationTable(results)}\n`);
        const simulated = results.reduce((sum, result) => sum + result.overall.submitted, 0);
        const wall = results.reduce((sum, result) => sum + result.wallSeconds, 0);
        process.stdout.write(
          `${results.length} run(s), ${simulated} simulated requests in ${wall.toFixed(2)} s (${Math.round(simulated / Math.max(wall, 1e-9))} requests/s of simulation)\n`,
        );
      }
      if (options.json) writeFileSync(options.json, `${JSON.stringify({ command, results }, null, 2)}\n`);
      if (options.html)
        writeFileSync(
          options.html,
          renderHtmlReport(results, {
            title: `gravity sim: ${scenario.name}`,
            command,
            generatedAt: new Date().toISOString(),
          }),
        );
    });
}

/**
 * The ledger a `process: ledger` scenario replays, read through its store before the runs; a ledger that
 * cannot be read (no such file, a PostgreSQL that cannot be reached or is not migrated) exits 2.
 */
export async function readLedgerOrExit(scenario: Scenario): Promise<LedgerReplay | undefined> {
  try {
    return await readScenarioLedger(scenario);
  } catch (error) {
    process.stderr.write(`gravity: workload.arrivals: ${(error as Error).message}\n`);
    process.exit(2);
  }
}

/** A progress bar on stderr for terminals; a line per run otherwise (logs stay readable). */
function createProgress(runs: number, quiet: boolean) {
  if (quiet) return { update: () => {}, stop: () => {} };
  if (!process.stderr.isTTY) {
    let lastRun = -1;
    return {
      update: (run: number) => {
        if (run === lastRun) return;
        lastRun = run;
        process.stderr.write(`run ${run + 1}/${runs}…\n`);
      },
      stop: () => {},
    };
  }
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: 'run {run}/{runs} [{bar}] {percentage}% | {value}/{total} requests',
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update: (run: number, completed: number, expected: number | null) => {
      const total = expected ?? Math.max(completed, 1);
      if (!started) {
        bar.start(total, 0, { run: run + 1, runs });
        started = true;
      }
      bar.setTotal(total);
      bar.update(completed, { run: run + 1, runs });
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}
