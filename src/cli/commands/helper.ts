/**
 * `sigil helper --config helper.yaml [--once]`: keeps SVID files (and JWT-SVID files) fresh
 * for programs that cannot speak the Workload API, and reloads them on every rotation.
 */
import { WorkloadApiClient } from '../../client/workload-api-client.js';
import { createLogger } from '../../common/logger.js';
import { loadHelperConfig } from '../../agent/helper/helper-config.js';
import { runHelper, type HelperSource } from '../../agent/helper/svid-helper.js';
import type { CommandIo } from '../io.js';
import { runService } from '../service.js';
import { parseArgs, usageError } from './args.js';
import { reportError } from './output.js';

const USAGE = `usage: sigil helper --config helper.yaml [--socket PATH|URI] [--once]

Writes svid.pem, svid_key.pem (0600) and bundle.pem (and any configured JWT-SVID files)
atomically on every rotation, for svids[0] or the SVID that spiffeId/hint in helper.yaml
select; then signals the pid in reload.pidFile or runs reload.command.
--once writes the files once and exits (0), waiting for the agent as long as it takes.
`;

/** Adapts the Workload API client to what the helper loop needs. */
export function workloadApiHelperSource(client: WorkloadApiClient): HelperSource {
  return {
    watchX509: (onUpdate, signal) => client.watchX509Context({ onUpdate: (ctx) => onUpdate({ svids: ctx.svids, bundles: ctx.bundles }) }, signal),
    fetchJwt: (audience, spiffeId, signal) => client.fetchJwtSvid({ audience, ...(spiffeId === undefined ? {} : { spiffeId }) }, signal),
    fetchJwtBundles: (signal) => client.fetchJwtBundles(signal),
  };
}

/** Runs `sigil helper`. */
export async function run(argv: string[], io: CommandIo): Promise<number> {
  let client: WorkloadApiClient | undefined;
  try {
    const args = parseArgs(argv, { booleans: ['once'] });
    if (args.has('help')) {
      io.out(USAGE);
      return 0;
    }
    const path = args.get('config');
    if (path === undefined) throw usageError('--config is required');
    const config = loadHelperConfig(path);
    const socket = args.get('socket') ?? config.agentAddress;
    const logger = createLogger({ level: config.logLevel, name: 'sigil-helper' });
    // With the logger, each failed attempt to reach the agent is a line: waiting is not silent.
    client = new WorkloadApiClient({ logger, ...(socket === undefined ? {} : { address: socket.startsWith('/') ? `unix://${socket}` : socket }) });
    const source = workloadApiHelperSource(client);
    return await runService({ name: 'sigil helper', io }, (stop) => runHelper({ config, source, logger, once: args.has('once') }, stop));
  } catch (err) {
    return reportError(io, err);
  } finally {
    client?.close();
  }
}
