/**
 * `node bin/sigil.js …` as a real child process, for the CLI tests. Nothing is swallowed:
 * the exit code, standard output and standard error come back as they were; a child that
 * cannot start, or is still running at the timeout (then killed), rejects with what it printed.
 */
import { spawn } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (dist/test/helpers → three levels up). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
/** The `sigil` entry point. */
export const SIGIL = join(ROOT, 'bin', 'sigil.js');

/** A finished `sigil` run. */
export interface SigilRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Options of sigil(). */
export interface SigilOptions {
  /** The whole environment of the child (default: PATH only, so no SIGIL_ or SPIFFE_ variable leaks in). */
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  readonly timeoutMs?: number;
}

/** Runs `sigil args…` to completion with stdin closed. */
export function sigil(args: readonly string[], options: SigilOptions = {}): Promise<SigilRun> {
  return new Promise((resolveRun, reject) => {
    const child = spawn(process.execPath, [SIGIL, ...args], {
      cwd: options.cwd ?? ROOT,
      env: options.env ?? { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs ?? 30_000);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === null) {
        const why = timedOut ? `still running after ${options.timeoutMs ?? 30_000} ms` : `killed by ${signal ?? 'a signal'}`;
        reject(new Error(`sigil ${args.join(' ')}: ${why}\nstdout: ${stdout}\nstderr: ${stderr}`));
        return;
      }
      resolveRun({ code, stdout, stderr });
    });
  });
}

/** A one-line description of a run, for assertion messages. */
export function described(args: readonly string[], r: SigilRun): string {
  return `sigil ${args.join(' ')} → exit ${r.code}\nstdout: ${r.stdout.slice(0, 2000)}\nstderr: ${r.stderr.slice(0, 2000)}`;
}
