// Bundles the dashboard's page (src/dashboard/client) into dist/dashboard-ui, where Gravity serves it
// from (`GET /dashboard`). Run by `npm run build`; uPlot and the page's CSS are bundled in, so the page
// loads nothing from anywhere but Gravity and works offline.
import { copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const client = path.join(root, 'src/dashboard/client');
const outdir = path.join(root, 'dist/dashboard-ui');

mkdirSync(outdir, { recursive: true });
await build({
  entryPoints: { dashboard: path.join(client, 'main.ts') },
  outdir,
  bundle: true,
  format: 'esm',
  target: ['es2022'],
  minify: true,
  legalComments: 'eof',
  logLevel: 'warning',
});
copyFileSync(path.join(client, 'index.html'), path.join(outdir, 'index.html'));
