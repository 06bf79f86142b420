/**
 * `sigil helper --config helper.yaml [--once]`: keeps SVID files (and JWT-SVID files) fresh
 * for programs that cannot speak the Workload API, and reloads them on every rotation.
 * Writes svid.pem, svid_key.pem (0600) and bundle.pem atomically for svids[0] or the SVID
 * that spiffeId/hint in helper.yaml select, then signals the pid in reload.pidFile or runs
 * reload.command; `--once` writes the files once and exits.
 */
import { WorkloadApiClient } from '../../client/workload-api-client.js';
import { SigilError } from '../../common/errors.js';
import { createLogger } from '../../common/logger.js';
import { loadHelperConfig } from '../../agent/helper/helper-config.js';
import { runHelper, type HelperSource } from '../../agent/helper/svid-helper.js';
import type { CommandIo } from '../io.js';
import { runService } from '../service.js';
import { usageError, type ParsedArgs } from './args.js';
import { reportError } from './output.js';
import { workloadAddress } from './workload.js';

/** Adapts the Workload API client to what the helper loop needs. */
export function workloadApiHelperSource(client: WorkloadApiClient): HelperSource {
  return {
    watchX509: (onUpdate, signal) => client.watchX509Context({ onUpdate: (ctx) => onUpdate({ svids: ctx.svids, bundles: ctx.bundles }) }, signal),
    fetchJwt: async (audience, { spiffeId, hint }, signal) => {
      const params = { audience, ...(spiffeId === undefined ? {} : { spiffeId }) };
      if (hint === undefined) return client.fetchJwtSvid(params, signal);
      // The Workload API selects by SPIFFE ID only: ask for every identity and pick by hint.
      const all = await client.fetchJwtSvids(params, signal);
      const found = all.find((s) => s.hint === hint);
      if (found === undefined) {
        const got = all.map((s) => (s.hint === '' ? s.id.toString() : `${s.id.toString()} (hint ${s.hint})`)).join(', ');
        throw new SigilError('ERR_NO_IDENTITY', `no JWT-SVID with hint ${hint}${spiffeId === undefined ? '' : ` for ${spiffeId}`} (got: ${got || 'none'})`, { reason: 'no-matching-svid' });
      }
      return found;
    },
    fetchJwtBundles: (signal) => client.fetchJwtBundles(signal),
  };
}

/** Runs `sigil helper`. */
export async function run(_command: string, args: ParsedArgs, io: CommandIo): Promise<number> {
  let client: WorkloadApiClient | undefined;
  try {
    const path = args.get('config');
    if (path === undefined) throw usageError('--config is required');
    const config = loadHelperConfig(path);
    const socket = args.get('socket') ?? config.agentAddress;
    const logger = createLogger({ level: config.logLevel, name: 'sigil-helper' });
    // With the logger, each failed attempt to reach the agent is a line: waiting is not silent.
    client = new WorkloadApiClient({ logger, ...(socket === undefined ? {} : { address: workloadAddress(socket) }) });
    const source = workloadApiHelperSource(client);
    return await runService({ name: 'sigil helper', io }, (stop) => runHelper({ config, source, logger, once: args.has('once') }, stop));
  } catch (err) {
    return reportError(io, err);
  } finally {
    client?.close();
  }
}
