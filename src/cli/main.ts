import { Command } from 'commander';
import { registerKeysCommand } from './keys-command.js';
import { registerMigrateCommand } from './migrate-command.js';
import { registerPlanCommand } from './plan-command.js';
import { registerReportCommand } from './report-command.js';
import { registerServeCommand } from './serve-command.js';
import { registerSimCommand } from './sim-command.js';

const program = new Command()
  .name('gravity')
  .description(
    'Gravity: an OpenAI-compatible inference gateway that meters tokens, seconds, joules and dollars',
  )
  .version('0.1.0');

registerServeCommand(program);
registerReportCommand(program);
registerSimCommand(program);
registerPlanCommand(program);
registerKeysCommand(program);
registerMigrateCommand(program);

await program.parseAsync(process.argv);
