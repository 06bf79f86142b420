/**
 * The `sigil` command. The commands, subcommands and flags are declared in definitions.ts
 * and parsed by parser.ts (commander); each command's module exports `run(command, args, io)`
 * and is loaded only when it runs, so `sigil agent run` does not load the server.
 * Exit codes: 0 success, 1 runtime failure, 2 usage error.
 */
import type { CommandIo } from './io.js';
import { defaultIo } from './io.js';
import { runCli } from './parser.js';

/** Runs the command line `args` (without node and script); resolves to the exit code. */
export async function main(args: string[], io: CommandIo = defaultIo()): Promise<number> {
  const code = await runCli(args, io);
  process.exitCode = code;
  return code;
}
