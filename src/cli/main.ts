/**
 * The `sigil` command: dispatches the first word to a command module. Each module exports
 * `run(args, io)` and returns the process exit code.
 */
import type { CommandIo } from './io.js';
import { defaultIo } from './io.js';

type CommandModule = { run(args: string[], io: CommandIo): Promise<number> };

/** Every top-level command, loaded on demand so `sigil agent` does not load the server. */
const COMMANDS: Record<string, { summary: string; load: () => Promise<CommandModule> }> = {
  server: { summary: 'run the server; healthcheck, rewrap-keys, generate-kek', load: () => import('./commands/server.js') },
  entry: { summary: 'registration entries: create, show, list, update, delete, count', load: () => import('./commands/entry.js') },
  token: { summary: 'generate a one-time join token', load: () => import('./commands/token.js') },
  bundle: { summary: 'trust bundles: show, list, set, delete', load: () => import('./commands/bundle.js') },
  agent: { summary: 'attested agents: list, show, evict, ban, unban', load: () => import('./commands/agent.js') },
  localauthority: { summary: 'X.509 CA and JWT key lifecycle: show, prepare, activate, taint, revoke', load: () => import('./commands/localauthority.js') },
  x509: { summary: 'mint an X.509-SVID', load: () => import('./commands/x509.js') },
  jwt: { summary: 'mint a JWT-SVID', load: () => import('./commands/jwt.js') },
  demo: { summary: 'run a local trust domain with two mTLS demo services (Ctrl-C stops it)', load: () => import('./commands/demo.js') },
  api: { summary: 'Workload API client: fetch x509|jwt|bundles, validate jwt, watch', load: () => import('./commands/api.js') },
  helper: { summary: 'write SVID files for programs that cannot speak the Workload API', load: () => import('./commands/helper.js') },
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
