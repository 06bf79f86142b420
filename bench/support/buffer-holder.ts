/**
 * Benchmark 8's floor: a plain Node process (the same node, --expose-gc, no Sigil module
 * loaded) that holds, per cached SVID, a copy of a real SVID's key (PKCS#8 DER) and its
 * chain (one Buffer per certificate) in an object, and reports its settled RSS — what the
 * bare bytes of an SVID cost in a Node process. The child is buffer-holder-main.ts.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Commands to the holder. */
export type HolderCommand = { readonly type: 'rss' } | { readonly type: 'hold'; readonly count: number; readonly key: Buffer; readonly chain: readonly Buffer[] };
/** Replies: the settled RSS (median of a few readings after full GCs) and the items held. */
export type HolderReply = { readonly type: 'rss'; readonly rss: number; readonly held: number } | { readonly type: 'error'; readonly error: string };

const HERE = dirname(fileURLToPath(import.meta.url));

/** The parent's handle on the holder process. */
export class BufferHolder {
  readonly #child: ChildProcess;

  private constructor(child: ChildProcess) {
    this.#child = child;
  }

  /** Forks the holder; resolves once it answers. */
  static async start(): Promise<BufferHolder> {
    const child = fork(join(HERE, 'buffer-holder-main.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced', execArgv: ['--expose-gc'] });
    const h = new BufferHolder(child);
    await h.rss();
    return h;
  }

  #ask(cmd: HolderCommand): Promise<{ rss: number; held: number }> {
    return new Promise((resolve, reject) => {
      const onMessage = (m: unknown): void => {
        cleanup();
        const r = m as HolderReply;
        if (r.type === 'error') reject(new Error(r.error));
        else resolve({ rss: r.rss, held: r.held });
      };
      const onExit = (code: number | null): void => {
        cleanup();
        reject(new Error(`buffer holder exited with ${code}`));
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

  /** Settled RSS now. */
  rss(): Promise<{ rss: number; held: number }> {
    return this.#ask({ type: 'rss' });
  }

  /** Holds `count` more copies of key + chain, then reports the settled RSS. */
  hold(count: number, key: Buffer, chain: readonly Buffer[]): Promise<{ rss: number; held: number }> {
    return this.#ask({ type: 'hold', count, key, chain });
  }

  stop(): void {
    this.#child.kill('SIGKILL');
  }
}
