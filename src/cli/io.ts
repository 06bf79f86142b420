/** Where a CLI command writes; injectable so tests can capture output in process. */

/** Output sinks of a command. */
export interface CommandIo {
  out(text: string): void;
  err(text: string): void;
}

/** Standard output and standard error. */
export function defaultIo(): CommandIo {
  return { out: (t) => void process.stdout.write(t), err: (t) => void process.stderr.write(t) };
}
