/**
 * The agent API's own TCP listener and the agents authenticated on each live connection.
 *
 * grpc-js builds a fresh object from the peer certificate (`getPeerCertificate`) every time a
 * handler asks for its auth context, and authenticating then reads the agent's record: a
 * profile of 2,000 agents put 1.26 s of main-thread time there. The certificate of a TLS
 * connection cannot change (HTTP/2 forbids renegotiation, and Node's http2 disables it), so
 * the agent is authenticated once per connection and remembered until something can change the
 * answer: the connection closes, a change to that agent is told (attested again, renewed,
 * banned, unbanned, evicted), or `maxAgeMs` passes (changes made by another server sharing the
 * datastore are not told here, so they take effect within that bound).
 *
 * Connections are accepted here and injected into grpc-js (which does TLS), so their opening
 * and closing are seen. A call finds its connection by `call.getPeer()`, the remote address and
 * port of its socket: unique among live connections to one listener, and a new connection from
 * the same address and port starts empty even if the old one's close is not yet processed.
 */
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import type { Clock } from '../../common/clock.js';
import type { AgentCaller } from './caller.js';

/** How long a remembered agent is trusted without reading its record again. */
export const AGENT_AUTH_MAX_AGE_MS = 5_000;
/** Pending connections the kernel keeps for the listener: thousands of agents reconnect at once after a restart. */
const LISTEN_BACKLOG = 4096;

interface Remembered {
  readonly caller: AgentCaller;
  readonly atMs: number;
}

/** One live connection's state. */
class Connection {
  remembered: Remembered | undefined;
}

/** Live agent API connections and the agent authenticated on each. */
export class AgentConnections {
  readonly #live = new Map<string, Connection>();
  readonly #clock: Clock;
  readonly #maxAgeMs: number;
  #server: NetServer | undefined;
  readonly #sockets = new Set<Socket>();
  #epoch = 0;
  #closed: Promise<void> | undefined;

  constructor(options: { readonly clock: Clock; readonly maxAgeMs?: number }) {
    this.#clock = options.clock;
    this.#maxAgeMs = options.maxAgeMs ?? AGENT_AUTH_MAX_AGE_MS;
  }

  /** Listens on host:port and hands every accepted connection to `inject`; resolves with the port. */
  listen(host: string, port: number, inject: (socket: Socket) => void): Promise<number> {
    const server = createServer({ noDelay: true }, (socket) => {
      const key = peerKey(socket.remoteAddress, socket.remotePort);
      if (key === undefined) {
        socket.destroy();
        return;
      }
      const conn = new Connection();
      this.#live.set(key, conn);
      this.#sockets.add(socket);
      socket.once('close', () => {
        this.#sockets.delete(socket);
        if (this.#live.get(key) === conn) this.#live.delete(key);
      });
      inject(socket);
    });
    this.#server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port, backlog: LISTEN_BACKLOG }, () => {
        server.removeListener('error', reject);
        const addr = server.address();
        resolve(typeof addr === 'object' && addr !== null ? addr.port : port);
      });
    });
  }

  /** The agent remembered for the connection of a call (`call.getPeer()`), if still fresh. */
  remembered(peer: string): AgentCaller | undefined {
    const r = this.#live.get(peer)?.remembered;
    if (r === undefined) return undefined;
    if (this.#clock.nowMs() - r.atMs >= this.#maxAgeMs) return undefined;
    return r.caller;
  }

  /** Bumped by every `forget`: read it before authenticating, hand it to `remember`. */
  get epoch(): number {
    return this.#epoch;
  }

  /**
   * Remembers `caller` for the connection of a call, unless something was forgotten since
   * `epoch` (the record read may predate a ban) or the connection is not (or no longer) live.
   */
  remember(peer: string, caller: AgentCaller, epoch: number): void {
    if (epoch !== this.#epoch) return;
    const conn = this.#live.get(peer);
    if (conn !== undefined) conn.remembered = { caller, atMs: this.#clock.nowMs() };
  }

  /** Forgets what was remembered for `agentId` (undefined: every agent) on every connection. */
  forget(agentId?: string): void {
    this.#epoch++;
    for (const conn of this.#live.values()) {
      if (agentId === undefined || conn.remembered?.caller.agentId === agentId) conn.remembered = undefined;
    }
  }

  /** Stops accepting new connections; the open ones go on (grpc-js drains them). */
  stopAccepting(): void {
    const server = this.#server;
    if (server === undefined || this.#closed !== undefined) return;
    this.#closed = new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Stops accepting and ends every connection still open. */
  async destroy(): Promise<void> {
    this.stopAccepting();
    for (const s of this.#sockets) s.destroy();
    await this.#closed;
  }
}

/** The key grpc-js's `getPeer()` gives a call on this socket. */
function peerKey(address: string | undefined, port: number | undefined): string | undefined {
  if (address === undefined || port === undefined) return undefined;
  return `${address}:${port}`;
}
