import Table from 'cli-table3';
import { energyCostProvenance, formatSignificant } from '../report/report-columns.js';
import type { SimulationResult } from '../simulation-result.js';
import type { CapacityPlan, FeasibleCandidate } from './capacity-planner.js';

/** What `gravity plan` prints: the cheapest fleet, the runners-up, and why the rest failed. */

const compactChars = { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' };

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

function usd(value: number): string {
  return `$${value.toFixed(2)}`;
}

/** The tier closest to failing: the one a little more load would break first. */
function tightestTier(outcome: FeasibleCandidate): string {
  const probe = outcome.probes.find((candidate) => candidate.replicas === outcome.replicas);
  const tiers = probe?.tiers ?? [];
  if (tiers.length === 0) return '–';
  const tightest = tiers.reduce((lowest, tier) => (tier.attainment < lowest.attainment ? tier : lowest));
  return `${tightest.tier} ${(tightest.attainment * 100).toFixed(1)}%`;
}

function describeFleet(outcome: FeasibleCandidate): string {
  const { candidate } = outcome;
  return (
    `${plural(outcome.replicas, 'replica')} of ${candidate.devices}× ${candidate.hardware} ` +
    `(${plural(outcome.gpus, 'GPU')}), ${candidate.routing} routing, ${candidate.ordering} ordering`
  );
}

export function formatCapacityPlan(plan: CapacityPlan): string {
  const lines: string[] = [];
  const targets = plan.tierTargets
    .map((tier) => `${tier.tier} TTFT ≤ ${tier.ttftMs} ms and TPOT ≤ ${tier.tpotMs} ms`)
    .join('; ');
  lines.push(
    `Capacity plan for ${plan.scenario}: the fewest replicas (up to ${plan.maxReplicas}) with at least ` +
      `${(plan.attainment * 100).toFixed(0)}% of each tier's requests within its SLO` +
      (targets ? ` (${targets}).` : '.'),
  );

  const cheapest = plan.feasible[0];
  if (cheapest) {
    lines.push(
      `Cheapest: ${describeFleet(cheapest)} — ${usd(cheapest.usdPerHour)} per hour, ` +
        `$${formatSignificant(cheapest.usdPerMillionOutputTokens)} per 1M output tokens, ` +
        `${formatSignificant(cheapest.joulesPerOutputToken)} J per output token.`,
    );
    const table = new Table({
      head: [
        '#',
        'hardware',
        'devices',
        'routing',
        'ordering',
        'replicas',
        'GPUs',
        '$ per h',
        '$ per 1M\nout tok',
        'J per\nout tok',
        'tightest\ntier',
        'probes',
      ],
      chars: compactChars,
      style: { head: [], border: [] },
      colAligns: [
        'right',
        'left',
        'right',
        'left',
        'left',
        'right',
        'right',
        'right',
        'right',
        'right',
        'left',
        'right',
      ],
    });
    plan.feasible.forEach((outcome, index) => {
      table.push([
        String(index + 1),
        outcome.candidate.hardware,
        String(outcome.candidate.devices),
        outcome.candidate.routing,
        outcome.candidate.ordering,
        String(outcome.replicas),
        String(outcome.gpus),
        usd(outcome.usdPerHour),
        formatSignificant(outcome.usdPerMillionOutputTokens),
        formatSignificant(outcome.joulesPerOutputToken),
        tightestTier(outcome),
        String(outcome.probes.length),
      ]);
    });
    lines.push(
      'Feasible candidates, cheapest first ($ per hour, then $ per 1M output tokens, then J per token):',
    );
    lines.push(table.toString());
  } else {
    lines.push('No candidate meets the SLOs.');
  }

  if (plan.infeasible.length > 0) {
    const table = new Table({
      head: ['hardware', 'devices', 'routing', 'ordering', 'why not'],
      chars: compactChars,
      style: { head: [], border: [] },
      colWidths: [null, null, null, null, 100],
      wordWrap: true,
    });
    for (const outcome of plan.infeasible)
      table.push([
        outcome.candidate.hardware,
        String(outcome.candidate.devices),
        outcome.candidate.routing,
        outcome.candidate.ordering,
        outcome.reason,
      ]);
    lines.push(cheapest ? 'Infeasible candidates:' : 'Candidates:', table.toString());
  }

  const results: SimulationResult[] = [...plan.feasible, ...plan.infeasible].flatMap((outcome) =>
    outcome.probes.map((probe) => probe.result),
  );
  if (results.length > 0) lines.push(energyCostProvenance(results));
  return lines.join('\n');
}
