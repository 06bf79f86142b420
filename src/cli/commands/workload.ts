/**
 * How the Workload API commands (`sigil api …`, `sigil agent healthcheck`) find the agent,
 * and their connection failures as one plain sentence naming the address tried.
 */
import { isAbsolute, resolve } from 'node:path';
import { DEFAULT_AGENT_SOCKET } from '../../agent/config.js';
import { SPIFFE_ENDPOINT_SOCKET } from '../../client/address.js';
import { WorkloadApiClient } from '../../client/workload-api-client.js';
import { isSigilError, SigilError } from '../../common/errors.js';
import { connectionError } from './admin-client.js';
import type { ParsedArgs } from './args.js';

/** A Workload API address (`unix:///path` or `tcp://IP:port`) from a `--socket` value: a path (relative to the current folder) or a URI. */
export function workloadAddress(socket: string): string {
  if (/^[a-z]+:\/\//.test(socket)) return socket;
  return `unix://${isAbsolute(socket) ? socket : resolve(socket)}`;
}

/**
 * The agent's address: `--socket`, else `configSocket` (an agent.yaml's socketPath), else
 * SPIFFE_ENDPOINT_SOCKET, else where the shipped deployments put it (/run/sigil/agent.sock).
 */
export function agentAddress(args: ParsedArgs, configSocket?: string, env: NodeJS.ProcessEnv = process.env): string {
  const socket = args.get('socket') ?? configSocket;
  if (socket !== undefined) return workloadAddress(socket);
  const fromEnv = env[SPIFFE_ENDPOINT_SOCKET];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  return workloadAddress(DEFAULT_AGENT_SOCKET);
}

/** A Workload API client of the agent `agentAddress` finds. */
export function workloadClient(args: ParsedArgs, configSocket?: string): { client: WorkloadApiClient; address: string } {
  const address = agentAddress(args, configSocket);
  return { client: new WorkloadApiClient({ address }), address };
}

/** The address as people write it: the socket path of a unix:// address. */
function shown(address: string): string {
  return address.startsWith('unix://') ? address.slice('unix://'.length) : address;
}

/**
 * A failure of the connection to the agent (nothing listening, no permission, or no answer
 * before `signal`'s timeout) as one plain sentence; anything the agent itself answered is kept.
 */
export function workloadFailure(err: unknown, address: string, timeoutMs: number, signal?: AbortSignal): unknown {
  if (signal?.aborted === true) {
    return new SigilError('ERR_DEADLINE_EXCEEDED', `timed out after ${Math.round(timeoutMs / 1000)}s (--timeout): no answer from the agent at ${shown(address)}`, { reason: 'workload-timeout', cause: err });
  }
  if (!isSigilError(err) || err.reason !== undefined) return err;
  const plain = connectionError(err.cause, shown(address), timeoutMs);
  if (plain === undefined) return err;
  if (plain.reason === 'no-server') {
    return new SigilError('ERR_UNAVAILABLE', `no agent at ${shown(address)} (is it running? set --socket or ${SPIFFE_ENDPOINT_SOCKET})`, { reason: 'no-agent', cause: err });
  }
  if (plain.reason === 'admin-socket-permission') {
    return new SigilError('ERR_PERMISSION_DENIED', `no permission to open the agent socket ${shown(address)}`, { reason: 'agent-socket-permission', cause: err });
  }
  return plain;
}
