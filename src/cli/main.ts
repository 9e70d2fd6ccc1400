import { Command } from 'commander';
import { registerReportCommand } from './report-command.js';
import { registerServeCommand } from './serve-command.js';

const program = new Command()
  .name('gravity')
  .description(
    'Gravity: an OpenAI-compatible inference gateway that meters tokens, seconds, joules and dollars',
  )
  .version('0.1.0');

registerServeCommand(program);
registerReportCommand(program);

await program.parseAsync(process.argv);
