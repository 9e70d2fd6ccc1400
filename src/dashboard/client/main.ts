import 'uplot/dist/uPlot.min.css';
import './dashboard.css';
import { forgetKey, KeyRefused, storeKey } from './api.js';
import { ChartSet } from './charts.js';
import { byId } from './dom.js';
import { HistoryView } from './history-view.js';
import { LiveView } from './live-view.js';
import { SimulationView } from './simulation-view.js';

/** The issue asks for at most two seconds between a request finishing and the page showing it. */
const pollIntervalMs = 2_000;
/** The ledger's history changes slowly next to the live figures; `/v1/usage` totals in SQL each time. */
const historyIntervalMs = 10_000;

const charts = new ChartSet();
const live = new LiveView(byId('live'), charts);
const historyView = new HistoryView(byId('history'), charts);
new SimulationView(byId('simulation'), charts);
const status = byId('status');
const keyForm = byId<HTMLFormElement>('key-form');

function showStatus(text: string): void {
  status.textContent = text;
}

let waitingForKey = false;

function askForKey(refused: KeyRefused): void {
  waitingForKey = true;
  keyForm.hidden = false;
  byId('key-problem').textContent =
    refused.status === 403
      ? 'That key is not an admin key: the dashboard shows every tenant, so it needs one (gravity keys create --tenant <name> --admin).'
      : 'Gravity has API keys: the dashboard needs an admin key (gravity keys create --tenant <name> --admin).';
  byId<HTMLInputElement>('key-input').focus();
  showStatus('waiting for an admin key');
}

keyForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const input = byId<HTMLInputElement>('key-input');
  if (input.value.trim() === '') return;
  storeKey(input.value.trim());
  input.value = '';
  keyForm.hidden = true;
  waitingForKey = false;
  void start();
});
byId('forget-key').addEventListener('click', () => {
  forgetKey();
  showStatus('key forgotten for this tab');
});

let historyLoadedAtMs = 0;
let historyEnabled = true;

async function tick(): Promise<void> {
  if (waitingForKey) return;
  try {
    const snapshot = await live.poll();
    historyView.setTargets(snapshot.tiers);
    historyEnabled = snapshot.ledger;
    byId('history-off').hidden = snapshot.ledger;
    if (historyEnabled && Date.now() - historyLoadedAtMs >= historyIntervalMs) {
      historyLoadedAtMs = Date.now();
      await historyView.refresh();
    }
    showStatus(`updated ${new Date(snapshot.now_ms).toISOString().slice(11, 19)} UTC`);
    document.body.dataset.ready = 'true';
  } catch (error) {
    if (error instanceof KeyRefused) {
      askForKey(error);
      return;
    }
    showStatus(`Gravity did not answer (${(error as Error).message}); retrying`);
  }
  setTimeout(() => void tick(), pollIntervalMs);
}

async function start(): Promise<void> {
  try {
    await live.loadExampleModel();
  } catch (error) {
    if (error instanceof KeyRefused) {
      askForKey(error);
      return;
    }
  }
  await tick();
}

for (const id of ['range', 'range-from', 'range-to'])
  byId(id).addEventListener('change', () => {
    if (!historyEnabled) return;
    historyLoadedAtMs = Date.now();
    void historyView.refresh().catch((error: Error) => showStatus(`history: ${error.message}`));
  });

/** Two views behind toggle buttons (keyboard: Tab to a button, Enter or Space), remembered in the URL hash. */
function showView(name: string): void {
  for (const button of document.querySelectorAll<HTMLButtonElement>('[data-view]')) {
    const selected = button.dataset.view === name;
    button.setAttribute('aria-pressed', String(selected));
    byId(`view-${button.dataset.view}`).hidden = !selected;
  }
  // Charts drawn while hidden had no width: size them to the view now shown.
  window.dispatchEvent(new Event('resize'));
}
for (const button of document.querySelectorAll<HTMLButtonElement>('[data-view]'))
  button.addEventListener('click', () => {
    history.replaceState(null, '', `#${button.dataset.view}`);
    showView(button.dataset.view ?? 'live');
  });
showView(location.hash === '#simulation' ? 'simulation' : 'live');

void start();
