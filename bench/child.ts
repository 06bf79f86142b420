/**
 * Runs one benchmark in its own process (`node dist/bench/child.js <id> [--full] [--quick] [--agents=N]`),
 * so each starts from a clean heap and RSS, and a crash or hang costs only that one. When
 * forked by the runner the outcome goes back over IPC; run by hand it is printed as JSON.
 */
import { BENCHMARKS } from './benchmarks.js';
import type { BenchOutcome } from './support/result.js';

/** The message a child sends its runner. */
export type ChildMessage = { readonly ok: true; readonly outcome: BenchOutcome } | { readonly ok: false; readonly error: string };

async function main(): Promise<void> {
  const id = Number(process.argv[2]);
  const entry = BENCHMARKS.find((b) => b.id === id);
  if (entry === undefined) throw new Error(`no benchmark ${process.argv[2]}`);
  const agentsArg = process.argv.find((a) => a.startsWith('--agents='));
  const agents = agentsArg === undefined ? undefined : Number(agentsArg.slice('--agents='.length));
  if (agents !== undefined && (!Number.isSafeInteger(agents) || agents < 1)) throw new Error(`--agents must be a positive integer, got ${agentsArg}`);
  const options = { full: process.argv.includes('--full'), quick: process.argv.includes('--quick'), ...(agents === undefined ? {} : { agents }) };
  const bench = await entry.load();
  const outcome = await bench.run(options, (line) => console.log(`  [${id}] ${line}`));
  const msg: ChildMessage = { ok: true, outcome };
  if (process.send !== undefined) await new Promise<void>((resolve) => process.send!(msg, () => resolve()));
  else console.log(JSON.stringify(outcome, null, 2));
}

main().then(
  () => process.exit(0),
  async (err: unknown) => {
    const error = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    console.error(`  [${process.argv[2]}] failed: ${err instanceof Error ? (err.stack ?? error) : error}`);
    const msg: ChildMessage = { ok: false, error };
    if (process.send !== undefined) await new Promise<void>((resolve) => process.send!(msg, () => resolve()));
    process.exit(1);
  },
);
