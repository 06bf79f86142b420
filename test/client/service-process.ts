/**
 * A real child process (an example from examples/client/, importing the compiled
 * `sigil/client`, or a script) whose stdout and stderr lines the test reads and waits on.
 * test/e2e/support/stack.ts starts the examples against the real agent.
 */
import type { ChildProcess } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (dist/test/client → ../../..). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

/** A running example process. */
export class ServiceProcess {
  readonly proc: ChildProcess;
  readonly lines: string[] = [];
  readonly exited: Promise<number | null>;
  #waiters: (() => void)[] = [];
  /** How the process ended, once it has: no line can come any more. */
  #ended: string | undefined;

  constructor(proc: ChildProcess) {
    this.proc = proc;
    let buf = '';
    const onData = (d: Buffer): void => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) !== -1) {
        this.lines.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
      for (const w of this.#waiters) w();
    };
    proc.stdout?.on('data', onData);
    proc.stderr?.on('data', onData);
    this.exited = new Promise((resolve) => proc.once('exit', (code, signal) => {
      if (buf.length > 0) this.lines.push(buf);
      this.lines.push(`[exited ${code ?? signal}]`);
      this.#ended = signal !== null ? `was killed by ${signal}` : `exited with code ${String(code)}`;
      for (const w of [...this.#waiters]) w();
      resolve(code);
    }));
  }

  /**
   * Resolves with the first line (from `from` on) matching `re`; rejects after `timeoutMs`, or
   * at once when the process has ended without such a line, with its exit and output (stdout
   * and stderr), so a service that could not start says why instead of timing out.
   */
  waitFor(re: RegExp, timeoutMs = 15_000, from = 0): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        for (const line of this.lines.slice(from)) {
          const m = re.exec(line);
          if (m !== null) {
            this.#waiters = this.#waiters.filter((w) => w !== waiter);
            clearTimeout(timer);
            resolve(m);
            return true;
          }
        }
        if (this.#ended !== undefined) {
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          clearTimeout(timer);
          reject(new Error(`process ${String(this.proc.pid)} ${this.#ended} before a line matching ${re}; output:\n${this.lines.join('\n')}`));
          return true;
        }
        return false;
      };
      const waiter = (): void => void check();
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        reject(new Error(`no line matching ${re} in ${timeoutMs}ms; output:\n${this.lines.join('\n')}`));
      }, timeoutMs);
      if (!check()) this.#waiters.push(waiter);
    });
  }

  /** Output so far, one string. */
  get output(): string {
    return this.lines.join('\n');
  }

  /** Asks the process to stop and waits for it (SIGKILL after 3s). */
  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 3000);
    await this.exited;
    clearTimeout(timer);
  }
}
