/**
 * The checks SPIRE users reach for: `sigil server validate` / `sigil agent validate` (a
 * configuration file, read and checked as the daemon would, without starting anything) and
 * `sigil agent healthcheck` (the agent's Workload API answers). `sigil server healthcheck`
 * is in server.ts.
 */
import { loadAgentConfig } from '../../agent/config.js';
import { isSigilError } from '../../common/errors.js';
import { loadServerConfig } from '../../server/config.js';
import type { CommandIo } from '../io.js';
import { durationMs, usageError, type ParsedArgs } from './args.js';
import { outputFormat, printJson, reportError } from './output.js';
import { workloadClient, workloadFailure } from './workload.js';

function validate(what: 'server' | 'agent', args: ParsedArgs, io: CommandIo): number {
  const path = args.get('config');
  if (path === undefined) throw usageError('--config is required');
  const trustDomain = what === 'server' ? loadServerConfig(path).trustDomain.name : loadAgentConfig(path).trustDomain.name;
  io.out(`${what} configuration ${path} is valid (trust domain ${trustDomain})\n`);
  return 0;
}

async function agentHealthcheck(args: ParsedArgs, io: CommandIo): Promise<number> {
  const config = args.get('config');
  const { client, address } = workloadClient(args, config === undefined ? undefined : loadAgentConfig(config).socketPath);
  const timeoutMs = durationMs(args, 'timeout', 5000);
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    let note = '';
    try {
      await client.fetchX509Bundles(signal);
    } catch (err) {
      // The agent answered, attested the caller and found no identity for it: it is serving.
      if (!isSigilError(err, 'ERR_NO_IDENTITY') && !isSigilError(err, 'ERR_PERMISSION_DENIED')) throw workloadFailure(err, address, timeoutMs, signal);
      note = ' (no identity for this caller)';
    }
    if (outputFormat(args) === 'json') printJson(io, { healthy: true, address });
    else io.out(`agent is healthy${note}\n`);
    return 0;
  } finally {
    client.close();
  }
}

/** Runs `sigil server validate`, `sigil agent validate` or `sigil agent healthcheck`. */
export async function run(command: string, args: ParsedArgs, io: CommandIo): Promise<number> {
  try {
    switch (command) {
      case 'server validate':
        return validate('server', args, io);
      case 'agent validate':
        return validate('agent', args, io);
      case 'agent healthcheck':
        return await agentHealthcheck(args, io);
      default:
        throw new Error(`no check ${command}`);
    }
  } catch (err) {
    return reportError(io, err);
  }
}
