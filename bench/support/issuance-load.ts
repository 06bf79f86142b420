/**
 * The load generator of benchmark 2, in a child process so that building requests, TLS
 * and decoding on the client side never run in the server's process (it still shares the
 * machine's cores). It drives either the server's BatchNewX509SVID (gRPC over TLS, agent
 * mTLS identity) or cfssl's HTTPS sign endpoint with the same CSRs, the same number of CSRs
 * in flight and the same number of connections.
 * The parent side is `IssuanceLoad`; the child side is issuance-load-main.ts.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** How the child reaches the two signers. */
export interface LoadSetup {
  readonly csrCount: number;
  readonly sigil: {
    readonly target: string;
    readonly rootsDer: Buffer[];
    readonly trustDomain: string;
    readonly chainDer: Buffer[];
    /** The bench agent's key; handed over IPC to our own child, never argv or env. */
    readonly keyPem: string;
    readonly entryIds: string[];
  };
  /** cfssl serve's base URL (https) and its TLS certificate, when cfssl runs. */
  readonly cfssl?: { readonly url: string; readonly tlsCertPem: string };
}

/** One measured run. */
export interface LoadResult {
  readonly seconds: number;
  readonly issued: number;
  readonly errors: number;
  readonly firstError?: string;
}

/** Commands to the child. */
export type LoadCommand =
  | { readonly type: 'setup'; readonly setup: LoadSetup }
  | { readonly type: 'sigil'; readonly batch: number; readonly inflightCsrs: number; readonly connections: number; readonly total: number }
  | { readonly type: 'cfssl'; readonly inflightCsrs: number; readonly connections: number; readonly total: number };

/** Replies from the child. */
export type LoadReply = { readonly type: 'ready' } | ({ readonly type: 'result' } & LoadResult) | { readonly type: 'error'; readonly error: string };

const HERE = dirname(fileURLToPath(import.meta.url));

/** The parent's handle on the load generator. */
export class IssuanceLoad {
  readonly #child: ChildProcess;

  private constructor(child: ChildProcess) {
    this.#child = child;
  }

  /** Forks the child and sets it up (it generates the CSRs). */
  static async start(setup: LoadSetup): Promise<IssuanceLoad> {
    const child = fork(join(HERE, 'issuance-load-main.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' });
    const load = new IssuanceLoad(child);
    await load.#ask({ type: 'setup', setup });
    return load;
  }

  #ask(cmd: LoadCommand): Promise<LoadReply> {
    return new Promise((resolve, reject) => {
      const onMessage = (m: unknown): void => {
        cleanup();
        const r = m as LoadReply;
        if (r.type === 'error') reject(new Error(r.error));
        else resolve(r);
      };
      const onExit = (code: number | null): void => {
        cleanup();
        reject(new Error(`issuance load generator exited with ${code}`));
      };
      const cleanup = (): void => {
        this.#child.off('message', onMessage);
        this.#child.off('exit', onExit);
      };
      this.#child.on('message', onMessage);
      this.#child.on('exit', onExit);
      this.#child.send(cmd);
    });
  }

  /** Signs `total` CSRs through BatchNewX509SVID in batches of `batch`, calls spread over `connections` HTTP/2 connections. */
  async sigil(batch: number, inflightCsrs: number, connections: number, total: number): Promise<LoadResult> {
    return (await this.#ask({ type: 'sigil', batch, inflightCsrs, connections, total })) as LoadResult;
  }

  /** Signs `total` CSRs through cfssl, `inflightCsrs` requests at a time over at most `connections` keep-alive connections. */
  async cfssl(inflightCsrs: number, connections: number, total: number): Promise<LoadResult> {
    return (await this.#ask({ type: 'cfssl', inflightCsrs, connections, total })) as LoadResult;
  }

  /** Ends the child: disconnecting lets it exit on its own (writing a --cpu-prof profile), a kill follows if it lingers. */
  stop(): void {
    if (this.#child.connected) this.#child.disconnect();
    setTimeout(() => this.#child.kill('SIGKILL'), 3000).unref();
  }
}
