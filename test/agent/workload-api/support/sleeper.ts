/**
 * A plain sleeping Node process, optionally run as another user through setpriv, for tests
 * that look at a real process from the outside (/proc, SO_PEERCRED, attestation).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';

/** Options of startSleeper. */
export interface SleeperOptions {
  readonly uid?: number;
  readonly gid?: number;
  readonly groups?: readonly number[];
  /** JavaScript run before the process reports ready (e.g. setting process.title, connecting). */
  readonly code?: string;
}

/** A running sleeper; `stop()` ends it by its own pid. */
export interface Sleeper {
  readonly pid: number;
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

/** Starts a Node process that prints `ready` once `code` has run, then sleeps until stopped. */
export async function startSleeper(options: SleeperOptions = {}): Promise<Sleeper> {
  const body = `${options.code ?? ''};console.log('ready');setInterval(()=>{},1e6);`;
  const nodeArgs = ['-e', body];
  const [command, args] =
    options.uid === undefined
      ? [process.execPath, nodeArgs]
      : [
          'setpriv',
          [
            `--reuid=${options.uid}`,
            `--regid=${options.gid ?? options.uid}`,
            ...((options.groups ?? []).length === 0 ? ['--clear-groups'] : [`--groups=${(options.groups ?? []).join(',')}`]),
            process.execPath,
            ...nodeArgs,
          ],
        ];
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  child.stdout?.setEncoding('utf8');
  let seen = '';
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`sleeper exited early with ${String(code)}`)));
    child.stdout?.on('data', (d: string) => {
      seen += d;
      if (seen.includes('ready')) resolve();
    });
  });
  const pid = child.pid as number;
  return {
    pid,
    child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    },
  };
}
