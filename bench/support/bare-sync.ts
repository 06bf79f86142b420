/**
 * Benchmark 7's floor: the same entries streamed by a bare grpc-js server to a bare grpc-js
 * client over the same transport as the agent's sync (SyncEntries of the agent proto, mutual
 * TLS with P-256 keys on loopback TCP, pages of the server's default size). The server
 * writes pages encoded in advance (no datastore, no authorisation, no per-agent state); the
 * client, in a child process of its own like the agent, only counts the entries it receives.
 * The parent side is here; the client is bare-sync-client-main.ts.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Server, ServerCredentials, type ServerWritableStream } from '@grpc/grpc-js';
import type { RegistrationEntry } from '../../src/datastore/datastore.js';
import { serviceDefinition } from '../../src/grpc/proto.js';
import { entryToMsg } from '../../src/server/agent-api/wire.js';
import { makeTlsPair, type TlsPair } from './tls-pair.js';

const AGENT_PROTO = 'sigil/agent/v1/agent.proto';
const AGENT_SERVICE = 'sigil.agent.v1.Agent';
/** The server's default SyncEntries page size. */
const PAGE = 500;

/** Commands to the client child. */
export type BareSyncCommand = { readonly type: 'sync'; readonly target: string; readonly tls: TlsPair; readonly entries: number; readonly timeoutMs: number };
/** Replies from the client child: `at` is its process.hrtime.bigint() when the last entry arrived. */
export type BareSyncReply = { readonly type: 'ready' } | { readonly type: 'synced'; readonly at: string } | { readonly type: 'error'; readonly error: string };

const HERE = dirname(fileURLToPath(import.meta.url));

/** A running bare sync server holding one set of entries. */
export interface BareSyncServer {
  /** Times one sync by a fresh client process: ms from asking it until it holds every entry. */
  syncOnce(timeoutMs: number): Promise<number>;
  close(): Promise<void>;
}

/** Starts the bare server with `entries` encoded into pages. */
export async function startBareSyncServer(entries: readonly RegistrationEntry[]): Promise<BareSyncServer> {
  const tls = makeTlsPair();
  const pages: unknown[] = [];
  for (let i = 0; i < entries.length || i === 0; i += PAGE) {
    const last = i + PAGE >= entries.length;
    pages.push({ kind: 'FULL', entries: entries.slice(i, i + PAGE).map(entryToMsg), deleted_entry_ids: [], federated_bundles: [], batch_complete: last, batch: 1 });
  }
  const streams = new Set<ServerWritableStream<unknown, unknown>>();
  const server = new Server({ 'grpc.max_send_message_length': 8 * 1024 * 1024 });
  server.addService(serviceDefinition(AGENT_PROTO, AGENT_SERVICE), {
    SyncEntries(call: ServerWritableStream<unknown, unknown>) {
      streams.add(call);
      call.on('cancelled', () => streams.delete(call));
      call.on('error', () => streams.delete(call));
      void (async () => {
        for (const p of pages) if (!call.write(p)) await new Promise<void>((resolve) => call.once('drain', () => resolve()));
      })();
    },
  });
  const creds = ServerCredentials.createSsl(Buffer.from(tls.certPem), [{ private_key: Buffer.from(tls.keyPem), cert_chain: Buffer.from(tls.certPem) }], true);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', creds, (err, p) => (err ? reject(err) : resolve(p))));
  const target = `127.0.0.1:${port}`;
  return {
    async syncOnce(timeoutMs) {
      const child = await spawnClient();
      try {
        const t0 = process.hrtime.bigint();
        const r = await ask(child, { type: 'sync', target, tls, entries: entries.length, timeoutMs }, timeoutMs + 5000);
        if (r.type !== 'synced') throw new Error(`bare sync client answered ${r.type}`);
        return Number(BigInt(r.at) - t0) / 1e6;
      } finally {
        child.kill('SIGKILL');
      }
    },
    close() {
      for (const s of streams) s.end();
      return new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2000);
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
    },
  };
}

/** Forks the client and waits until it has loaded its modules. */
async function spawnClient(): Promise<ChildProcess> {
  const child = fork(join(HERE, 'bare-sync-client-main.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('exit', (code) => reject(new Error(`bare sync client exited with ${code}`)));
  });
  return child;
}

function ask(child: ChildProcess, cmd: BareSyncCommand, timeoutMs: number): Promise<BareSyncReply> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      cleanup();
      reject(new Error(`bare sync client: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const onMessage = (m: unknown): void => {
      cleanup();
      const r = m as BareSyncReply;
      if (r.type === 'error') reject(new Error(r.error));
      else resolve(r);
    };
    const onExit = (code: number | null): void => {
      cleanup();
      reject(new Error(`bare sync client exited with ${code}`));
    };
    const cleanup = (): void => {
      clearTimeout(t);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.on('exit', onExit);
    child.send(cmd);
  });
}
