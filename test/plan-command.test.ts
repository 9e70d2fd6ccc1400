import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { spawnGravity } from './support/gravity-process.js';

/** `gravity plan` as a process: what it prints, writes and exits with. */

const directory = mkdtempSync(path.join(tmpdir(), 'gravity-plan-'));

function writeScenario(name: string, fleet: string, plan: string): string {
  const file = path.join(directory, `${name}.yaml`);
  writeFileSync(
    file,
    `name: ${name}
fleet: { hardware: h100-sxm, model: ${fleet} }
workload:
  arrivals: { process: poisson, ratePerSecond: 20 }
  requests: 300
slo:
  default: { ttftMs: 500, tpotMs: 40 }
${plan}
`,
  );
  return file;
}

async function plan(args: string[]) {
  const run = spawnGravity(['plan', ...args]);
  const { code } = await run.exited;
  return { code, stdout: run.stdout(), stderr: run.stderr() };
}

describe('gravity plan', () => {
  it('prints the cheapest fleet and writes the plan as JSON and HTML', async () => {
    const scenario = writeScenario(
      'feasible',
      'llama-3.1-8b',
      'plan: { hardware: [a100-80gb, h100-sxm], maxReplicas: 8 }',
    );
    const jsonFile = path.join(directory, 'plan.json');
    const htmlFile = path.join(directory, 'plan.html');
    const result = await plan([scenario, '--json', jsonFile, '--html', htmlFile]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^Cheapest: \d+ replicas? of 1× (a100-80gb|h100-sxm)/m);
    // Not a TTY: one progress line per candidate.
    expect(result.stderr.match(/^candidate \d\/2 /gm)).toHaveLength(2);
    const written = JSON.parse(readFileSync(jsonFile, 'utf8'));
    expect(written.command).toContain('gravity plan');
    expect(written.plan.feasible).toHaveLength(2);
    const html = readFileSync(htmlFile, 'utf8');
    expect(html.includes('<title>gravity plan: feasible</title>')).toBe(true);
  });

  it('exits 1 and says why when no candidate is feasible', async () => {
    const scenario = writeScenario('too-big', 'llama-3.1-70b', 'plan: { hardware: [l4], maxReplicas: 4 }');
    const result = await plan([scenario, '--quiet']);
    expect(result.code).toBe(1);
    expect(result.stdout).toContain('No candidate meets the SLOs.');
    expect(result.stdout).toContain('does not fit');
    expect(result.stderr).toBe('');
  });

  it('exits 2 when the scenario has no plan section', async () => {
    const scenario = writeScenario('no-plan', 'llama-3.1-8b', '');
    const result = await plan([scenario]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('has no plan section');
  });
});
