/** Real child processes for the CLI tests: `node bin/sigil.js …` and other programs, with captured output. */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (dist/test/agent/support → four levels up). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');
/** The `sigil` entry point. */
export const SIGIL_BIN = join(REPO_ROOT, 'bin', 'sigil.js');

/** The outcome of a finished command. */
export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to completion with stdin closed (or fed `input`); kills it after `timeoutMs`. */
export function runCommand(file: string, args: readonly string[], options: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(file, args, { env: options.env ?? { PATH: process.env.PATH ?? '/usr/bin:/bin' }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 20_000);
    child.once('error', reject);
    // A program that exits without reading its input (nginx -s, openssl) closes the pipe first: not an error here.
    child.stdin.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolveRun({ code, stdout, stderr });
    });
    child.stdin.end(options.input ?? '');
  });
}

/** Runs `node bin/sigil.js args…`. */
export function runSigil(args: readonly string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return runCommand(process.execPath, [SIGIL_BIN, ...args], options);
}

/** How a child ended: its exit code, or the signal that killed it. */
export interface Ending {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** A long-running child whose output is kept. */
export class Daemon {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;
  /** Settles once the child ended and all its output was read. */
  readonly closed: Promise<Ending>;
  #ending: Ending | undefined;

  constructor(file: string, args: readonly string[], env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/bin:/bin' }, options: { cwd?: string } = {}) {
    this.child = spawn(file, args, { env, stdio: ['ignore', 'pipe', 'pipe'], ...(options.cwd === undefined ? {} : { cwd: options.cwd }) });
    this.child.stdout?.setEncoding('utf8').on('data', (d: string) => (this.stdout += d));
    this.child.stderr?.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    this.exited = new Promise((r) => this.child.once('exit', (code) => r(code)));
    this.closed = new Promise((r) =>
      this.child.once('close', (code, signal) => {
        this.#ending = { code, signal };
        r(this.#ending);
      }),
    );
  }

  /** Everything it printed, stdout then stderr. */
  get output(): string {
    return `${this.stdout}${this.stderr}`;
  }

  /** True until the child has ended. */
  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** How many lines of its output match `re`. */
  count(re: RegExp): number {
    return this.output.split('\n').filter((l) => re.test(l)).length;
  }

  /**
   * Waits until `check()` holds (polled every 20 ms); fails at once, with the child's output,
   * when the child ends first, and after `timeoutMs` otherwise.
   */
  async until(what: string, check: () => boolean, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (check()) return;
      if (this.#ending !== undefined) {
        throw new Error(`the child ${this.#ending.signal === null ? `exited with ${String(this.#ending.code)}` : `was killed by ${this.#ending.signal}`} before ${what}; its output:\n${this.output.slice(-4000)}`);
      }
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; its output:\n${this.output.slice(-4000)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Sends `signal` to this child (by its own pid) and waits for it to exit; SIGKILL after 5 s. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}
