/** Where a CLI command writes; injectable so tests can capture output in process. */

/** Output sinks of a command. */
export interface CommandIo {
  out(text: string): void;
  err(text: string): void;
}

let pipeGuardInstalled = false;

/** Standard output and standard error. */
export function defaultIo(): CommandIo {
  if (!pipeGuardInstalled) {
    pipeGuardInstalled = true;
    // `sigil api watch | head`: once the reader is gone there is nobody left to tell; stop quietly.
    for (const stream of [process.stdout, process.stderr]) {
      stream.on('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'EPIPE') process.exit(0);
        throw err;
      });
    }
  }
  return { out: (t) => void process.stdout.write(t), err: (t) => void process.stderr.write(t) };
}
