/**
 * `sigil agent <subcommand>`: dispatches to subcommand modules so each lives in its own
 * file. Admin subcommands (list, show, evict, ban, unban) are in agent-admin.ts; the agent
 * daemon adds `run` with one line in SUBCOMMANDS pointing at its own file.
 */
import type { CommandIo } from '../io.js';

/** A subcommand module: `run(subcommand, args, io)` resolves to the exit code. */
export interface AgentSubcommandModule {
  run(subcommand: string, args: string[], io: CommandIo): Promise<number>;
}

/** Every `sigil agent` subcommand, loaded on demand. */
const SUBCOMMANDS: Record<string, { readonly summary: string; readonly load: () => Promise<AgentSubcommandModule> }> = {
  list: { summary: 'list attested agents (server admin API)', load: () => import('./agent-admin.js') },
  show: { summary: 'show one attested agent', load: () => import('./agent-admin.js') },
  evict: { summary: 'forget an agent; it must attest again', load: () => import('./agent-admin.js') },
  ban: { summary: 'refuse an agent until unbanned', load: () => import('./agent-admin.js') },
  unban: { summary: 'lift a ban', load: () => import('./agent-admin.js') },
  run: { summary: 'run the agent daemon (--config agent.yaml)', load: () => import('./agent-run.js') },
};

function usage(io: CommandIo): void {
  io.out('usage: sigil agent <subcommand> [flags]\n\nsubcommands:\n');
  for (const [name, s] of Object.entries(SUBCOMMANDS)) io.out(`  ${name.padEnd(10)}${s.summary}\n`);
}

/** Runs `sigil agent …`. */
export async function run(argv: string[], io: CommandIo): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    usage(io);
    return sub === undefined ? 2 : 0;
  }
  const s = SUBCOMMANDS[sub];
  if (s === undefined) {
    io.err(`sigil: unknown agent subcommand ${JSON.stringify(sub)}; run "sigil agent --help"\n`);
    return 2;
  }
  return (await s.load()).run(sub, rest, io);
}
