/**
 * `sigil agent run --config agent.yaml`: runs the agent daemon until SIGINT or SIGTERM
 * (exit codes: src/cli/service.ts).
 * Flags override the file; the join token is only ever read from a file (`--join-token-file`).
 */
import { loadAgentConfig, type AgentFlags } from '../../agent/config.js';
import { startAgent } from '../../agent/agent.js';
import type { CommandIo } from '../io.js';
import { runService, untilAborted } from '../service.js';
import { usageError, type ParsedArgs } from './args.js';
import { reportError } from './output.js';

function flagsOf(args: ParsedArgs): AgentFlags {
  const pick = (name: string): string | undefined => args.get(name);
  const out: Record<string, string> = {};
  const map: [keyof AgentFlags, string][] = [
    ['socketPath', 'socket'],
    ['dataDir', 'data-dir'],
    ['serverAddress', 'server-address'],
    ['trustBundleFile', 'trust-bundle'],
    ['joinTokenFile', 'join-token-file'],
    ['trustDomain', 'trust-domain'],
    ['logLevel', 'log-level'],
  ];
  for (const [key, flag] of map) {
    const v = pick(flag);
    if (v !== undefined) out[key] = v;
  }
  return out as AgentFlags;
}

/** Runs `sigil agent run`. */
export async function run(_command: string, args: ParsedArgs, io: CommandIo): Promise<number> {
  try {
    if (args.get('join-token') !== undefined) throw usageError('a join token is a secret: put it in a file (mode 0600) and pass --join-token-file');
    const config = loadAgentConfig(args.get('config'), flagsOf(args));
    return await runService({ name: 'sigil agent', io }, async (stop) => {
      const agent = await startAgent(config, {}, stop);
      io.err(`sigil agent: ${agent.agentId()} serving the Workload API on ${agent.address}\n`);
      await untilAborted(stop);
      await agent.stop();
    });
  } catch (err) {
    return reportError(io, err);
  }
}
