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
/** Accepted connections handed to grpc-js per turn of the event loop (see `listen`). */
const INJECT_PER_TURN = 16;
/** Agents whose last forget is kept apart; beyond it the map is cleared and everyone counts as forgotten then. */
const FORGOTTEN_LIMIT = 100_000;

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
  /** Bumped by every `forget`. */
  #epoch = 0;
  /** The epoch of the last `forget()` of every agent. */
  #allForgottenAt = 0;
  /** The epoch of the last `forget(agentId)`, per agent (one number per agent ever forgotten; see FORGOTTEN_LIMIT). */
  readonly #forgottenAt = new Map<string, number>();
  #closed: Promise<void> | undefined;

  constructor(options: { readonly clock: Clock; readonly maxAgeMs?: number }) {
    this.#clock = options.clock;
    this.#maxAgeMs = options.maxAgeMs ?? AGENT_AUTH_MAX_AGE_MS;
  }

  /**
   * Listens on host:port and hands every accepted connection to `inject`; resolves with the port.
   *
   * Accepting is kept cheap and injecting (TLS and HTTP/2 set-up, ~0.5 ms each) is spread over
   * turns of the event loop, INJECT_PER_TURN at a time: injected inline, a burst of thousands
   * of agents held the loop while the kernel's accept queue overflowed, and a dropped SYN is
   * retried by the client 1, 3, 7, 15, 31 s later, which put agents past their deadlines with the
   * server idle. Waiting here, a connection costs a descriptor, and the I/O of connections
   * already injected runs between turns.
   */
  listen(host: string, port: number, inject: (socket: Socket) => void): Promise<number> {
    let waiting: Socket[] = [];
    let next = 0;
    let scheduled = false;
    // a reset while it waits must not be an unhandled 'error'; grpc-js listens once it has it
    const ignoreWhileWaiting = (): void => undefined;
    const injectSome = (): void => {
      scheduled = false;
      for (let n = 0; n < INJECT_PER_TURN && next < waiting.length; n++) {
        const socket = waiting[next++] as Socket;
        socket.removeListener('error', ignoreWhileWaiting);
        // the client gave up (or the server is stopping) while it waited
        if (socket.destroyed) continue;
        const key = peerKey(socket.remoteAddress, socket.remotePort);
        if (key === undefined) {
          socket.destroy();
          continue;
        }
        const conn = new Connection();
        this.#live.set(key, conn);
        socket.once('close', () => {
          if (this.#live.get(key) === conn) this.#live.delete(key);
        });
        inject(socket);
      }
      if (next === waiting.length) {
        waiting = [];
        next = 0;
      } else schedule();
    };
    const schedule = (): void => {
      if (scheduled) return;
      scheduled = true;
      setImmediate(injectSome);
    };
    const server = createServer({ noDelay: true }, (socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
      socket.on('error', ignoreWhileWaiting);
      waiting.push(socket);
      schedule();
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
   * Remembers `caller` for the connection of a call, unless that agent (or every agent) was
   * forgotten since `epoch` (the record read may predate a ban) or the connection is not (or
   * no longer) live. Forgetting another agent does not stop it: with thousands of agents
   * attesting, some agent is forgotten at every moment.
   */
  remember(peer: string, caller: AgentCaller, epoch: number): void {
    if (this.#allForgottenAt > epoch || (this.#forgottenAt.get(caller.agentId) ?? 0) > epoch) return;
    const conn = this.#live.get(peer);
    if (conn !== undefined) conn.remembered = { caller, atMs: this.#clock.nowMs() };
  }

  /** Forgets what was remembered for `agentId` (undefined: every agent) on every connection. */
  forget(agentId?: string): void {
    this.#epoch++;
    if (agentId === undefined || this.#forgottenAt.size >= FORGOTTEN_LIMIT) {
      this.#allForgottenAt = this.#epoch;
      this.#forgottenAt.clear();
    } else {
      this.#forgottenAt.set(agentId, this.#epoch);
    }
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
