/**
 * The child processes of `sigil demo`: started in their own process group (so a Ctrl-C in
 * the terminal reaches only the demo, which then stops them in order), output to a log file
 * or relayed line by line with a name prefix, and stopped with SIGTERM, then SIGKILL after
 * a grace period.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { createInterface } from 'node:readline';

/** How a child's output is handled. */
export type ChildOutput = { readonly logFile: string } | { readonly relay: (line: string) => void };

/** One started child. */
export interface DemoChild {
  readonly name: string;
  readonly process: ChildProcess;
  readonly pid: number;
  /** Resolves with the exit code (or signal name) once the child has exited. */
  readonly exited: Promise<number | string>;
}

/** Starts, tracks and stops the demo's children. */
export class DemoChildren {
  readonly #children: DemoChild[] = [];

  /** Every child started so far, in start order. */
  get all(): readonly DemoChild[] {
    return this.#children;
  }

  /** Starts `command args` with `env` added to this process's environment. */
  start(name: string, command: string, args: readonly string[], options: { cwd: string; env?: Record<string, string>; output: ChildOutput }): DemoChild {
    let logFd: number | undefined;
    let stdio: ('pipe' | 'ignore' | number)[];
    if ('logFile' in options.output) {
      logFd = openSync(options.output.logFile, 'a', 0o600);
      stdio = ['pipe', logFd, logFd];
    } else {
      stdio = ['pipe', 'pipe', 'pipe'];
    }
    // detached: a process group of its own, so the terminal's SIGINT does not hit it before
    // the demo has stopped the processes that depend on it. stdin stays an open pipe: demo
    // services exit when it closes, i.e. when the demo is gone, however it ended.
    const child = spawn(command, args, { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio, detached: true });
    if (logFd !== undefined) closeSync(logFd);
    if (!('logFile' in options.output)) {
      const relay = options.output.relay;
      for (const stream of [child.stdout, child.stderr]) {
        if (stream !== null) createInterface({ input: stream }).on('line', relay);
      }
    }
    const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));
    if (child.pid === undefined) throw new Error(`could not start ${name}`);
    const started: DemoChild = { name, process: child, pid: child.pid, exited };
    this.#children.push(started);
    return started;
  }

  /** Stops one child: SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
  async stop(child: DemoChild, graceMs: number): Promise<void> {
    if (child.process.exitCode !== null || child.process.signalCode !== null) return;
    child.process.kill('SIGTERM');
    const timer = setTimeout(() => child.process.kill('SIGKILL'), graceMs);
    await child.exited;
    clearTimeout(timer);
    child.process.stdin?.destroy();
  }

  /** Stops every child, the last started first (services, then agent, then server). */
  async stopAll(graceMs: number, onStop?: (child: DemoChild) => void): Promise<void> {
    for (const child of [...this.#children].reverse()) {
      onStop?.(child);
      await this.stop(child, graceMs);
    }
  }

  /** Last resort when the demo itself is exiting abnormally: SIGKILL whatever still runs. */
  killAll(): void {
    for (const child of this.#children) {
      if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill('SIGKILL');
    }
  }
}
