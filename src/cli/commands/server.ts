/** `sigil server run|healthcheck|remove|rewrap-keys|generate-kek`: the server daemon and its maintenance commands (`validate` is in check.ts). */
import { readKekFile, generateKekFile } from '../../ca/key-manager/kek.js';
import { resolve as resolvePath } from 'node:path';
import { rewrapKeys, type Kek } from '../../ca/key-manager/disk-key-manager.js';
import { openKek } from '../../ca/key-manager/open-key-manager.js';
import { SigilError } from '../../common/errors.js';
import { loadServerConfig, type ServerFlags } from '../../server/config.js';
import { startServer } from '../../server/server.js';
import type { CommandIo } from '../io.js';
import { runService, untilAborted } from '../service.js';
import { usageError, type ParsedArgs } from './args.js';
import { AdminClient } from './admin-client.js';
import { adminSocket, outputFormat, printJson, reportError } from './output.js';

function flagsOf(args: ParsedArgs): ServerFlags {
  const f: { -readonly [K in keyof ServerFlags]: ServerFlags[K] } = {};
  const map: [keyof ServerFlags, string][] = [
    ['trustDomain', 'trust-domain'],
    ['dataDir', 'data-dir'],
    ['logLevel', 'log-level'],
    ['agentAddress', 'agent-address'],
    ['adminSocket', 'admin-socket'],
    ['healthAddress', 'health-address'],
  ];
  for (const [key, flag] of map) {
    const v = args.get(flag);
    if (v !== undefined) f[key] = v;
  }
  return f;
}

async function runServer(args: ParsedArgs, io: CommandIo): Promise<number> {
  const config = loadServerConfig(args.get('config'), flagsOf(args));
  return runService({ name: 'sigil server', io }, async (stop) => {
    // the stop signal also ends a start that still waits (for PostgreSQL): exit 0, not a failure
    const server = await startServer(config, {}, stop);
    io.err(`sigil server: serving ${config.trustDomain.name}, agent API on ${server.agentAddress.host}:${server.agentAddress.port}, admin socket ${server.adminSocketPath}\n`);
    // a stop asked, or the server removed while running (it must not keep issuing): exit 1
    const failure = await Promise.race([untilAborted(stop).then(() => undefined), server.failure]);
    await server.stop();
    if (failure !== undefined) throw failure;
  });
}

async function healthcheck(args: ParsedArgs, io: CommandIo): Promise<number> {
  const client = new AdminClient(adminSocket(args));
  try {
    const info = await client.call<{ ready: boolean; trust_domain: string; version: string }>('Server', 'GetInfo', {}, 5000);
    if (outputFormat(args) === 'json') printJson(io, { healthy: info.ready, trustDomain: info.trust_domain, version: info.version });
    else io.out(info.ready ? 'server is healthy\n' : 'server is not ready\n');
    return info.ready ? 0 : 1;
  } finally {
    client.close();
  }
}

async function remove(args: ParsedArgs, io: CommandIo): Promise<number> {
  const serverId = args.get('server-id');
  if (serverId === undefined) throw usageError('--server-id is required');
  const client = new AdminClient(adminSocket(args));
  try {
    const r = await client.call<{ server_id: string; removed_at: number | string; authorities: number; drained_at: number | string; already_removed: boolean }>('Server', 'RemoveServer', { server_id: serverId });
    const removedAt = new Date(Number(r.removed_at) * 1000).toISOString();
    const drainedAt = new Date(Number(r.drained_at) * 1000).toISOString();
    if (outputFormat(args) === 'json') {
      printJson(io, { serverId: r.server_id, removedAt, authorities: r.authorities, drainedAt, alreadyRemoved: r.already_removed });
    } else {
      io.out(
        `${r.already_removed ? 'server was already removed' : 'removed server'} ${r.server_id} (at ${removedAt}): its ${r.authorities} authorit${r.authorities === 1 ? 'y leaves' : 'ies leave'} the trust bundle once what ${r.authorities === 1 ? 'it' : 'they'} signed has expired, by ${drainedAt}; its CA journal is deleted then\n`,
      );
    }
    return 0;
  } finally {
    client.close();
  }
}

async function rewrap(args: ParsedArgs, io: CommandIo): Promise<number> {
  const configPath = args.get('config');
  const newKekPath = args.get('new-kek');
  const toConfigPath = args.get('to-config');
  if (configPath === undefined || (newKekPath === undefined) === (toConfigPath === undefined)) {
    throw usageError('--config and one of --new-kek and --to-config are required');
  }
  const config = loadServerConfig(configPath);
  const from = await openKek(config.keyManager);
  try {
    let to: { kek: Kek; close(): Promise<void> };
    if (newKekPath !== undefined) {
      to = { kek: await readKekFile(newKekPath), close: async () => undefined };
    } else {
      const target = loadServerConfig(toConfigPath as string).keyManager;
      if (target.type !== 'memory' && resolvePath(target.dir) !== resolvePath(config.keyManager.dir)) {
        throw new SigilError('ERR_FAILED_PRECONDITION', `--to-config keeps its keys in ${target.dir}, not ${config.keyManager.dir}: set keyManager.dir to the same directory`, {
          reason: 'rewrap-dir-mismatch',
        });
      }
      to = await openKek(target);
    }
    try {
      const result = await rewrapKeys(config.keyManager.dir, from.kek, to.kek);
      const next = newKekPath !== undefined ? `set keyManager.kekFile to ${newKekPath}` : `start the server with ${toConfigPath as string}`;
      if (outputFormat(args) === 'json') printJson(io, result);
      else io.out(`re-wrapped ${result.rewrapped} keys (${result.alreadyCurrent} already under the new KEK); now ${next}\n`);
      return 0;
    } finally {
      await to.close();
    }
  } finally {
    await from.close();
  }
}

/** Runs `sigil server <sub>`. */
export async function run(sub: string, args: ParsedArgs, io: CommandIo): Promise<number> {
  try {
    switch (sub) {
      case 'run':
        return await runServer(args, io);
      case 'healthcheck':
        return await healthcheck(args, io);
      case 'remove':
        return await remove(args, io);
      case 'rewrap-keys':
        return await rewrap(args, io);
      case 'generate-kek': {
        const path = args.get('path') ?? args.positionals[0];
        if (path === undefined) throw usageError('--path is required');
        if (args.get('path') !== undefined && args.positionals[0] !== undefined) throw usageError('give the file once: as the argument or with --path');
        await generateKekFile(path);
        io.out(`wrote a new KEK to ${path} (mode 0600)\n`);
        return 0;
      }
      default:
        throw new Error(`no server subcommand ${sub}`);
    }
  } catch (err) {
    return reportError(io, err);
  }
}
