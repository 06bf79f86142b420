/**
 * The `sigil` command: dispatches the first word to a command module. Each module exports
 * `run(args, io)` and returns the process exit code.
 */
import type { CommandIo } from './io.js';
import { defaultIo } from './io.js';

type CommandModule = { run(args: string[], io: CommandIo): Promise<number> };

/** Every top-level command, loaded on demand so `sigil agent` does not load the server. */
const COMMANDS: Record<string, { summary: string; load: () => Promise<CommandModule> }> = {
};

function usage(io: CommandIo): void {
  io.out('usage: sigil <command> [options]\n\ncommands:\n');
  for (const [name, c] of Object.entries(COMMANDS)) io.out(`  ${name.padEnd(16)}${c.summary}\n`);
}

/** Runs the command line `args` (without node and script); resolves to the exit code. */
export async function main(args: string[], io: CommandIo = defaultIo()): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    usage(io);
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (command === undefined) {
    io.err(`sigil: unknown command ${JSON.stringify(name)}; run "sigil --help" for the list\n`);
    return 2;
  }
  const code = await (await command.load()).run(rest, io);
  process.exitCode = code;
  return code;
}
