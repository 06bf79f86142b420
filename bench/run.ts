/**
 * `npm run bench`: runs the benchmarks one after another, each in its own child
 * process with a time budget, then prints one table (figure; floor measured in the same run,
 * or "none (<why>)": "absolute" for a row with nothing comparable to measure, or the floor's
 * program missing; ratio to a measured floor only; target; met?) and writes a JSON summary
 * to bench/results/.
 *
 * Flags: --full (full counts where the default is reduced), --quick (tiny counts, a smoke
 * run), --only=1,3 (a subset), --agents=N (benchmark 10's number of agents).
 */
import { fork, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem, release } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BENCHMARKS, type BenchmarkEntry } from './benchmarks.js';
import type { ChildMessage } from './child.js';
import { unmeasured, type BenchOutcome, type BenchRow } from './support/result.js';
import { markdownTable, textTable } from './support/table.js';

const HERE = dirname(fileURLToPath(import.meta.url));
/** The package root: dist/bench/ -> ../../ */
const ROOT = resolve(HERE, '..', '..');

interface Ran {
  readonly entry: BenchmarkEntry;
  readonly seconds: number;
  readonly outcome: BenchOutcome | undefined;
  readonly error: string | undefined;
}

function parseArgs(argv: readonly string[]): { full: boolean; quick: boolean; only: Set<number> | undefined; agents: string | undefined } {
  const onlyArg = argv.find((a) => a.startsWith('--only='));
  const only = onlyArg === undefined ? undefined : new Set(onlyArg.slice('--only='.length).split(',').map(Number));
  const agents = argv.find((a) => a.startsWith('--agents='));
  for (const a of argv) {
    if (a !== '--full' && a !== '--quick' && !a.startsWith('--only=') && !a.startsWith('--agents=')) throw new Error(`unknown flag ${a} (use --full, --quick, --only=1,3, --agents=N)`);
  }
  return { full: argv.includes('--full'), quick: argv.includes('--quick'), only, agents };
}

/** cfssl is benchmark 2's floor: install it through bench/setup.sh when missing. */
function ensureCfssl(): void {
  if (spawnSync('sh', ['-c', 'command -v cfssl'], { stdio: 'ignore' }).status === 0) return;
  console.log('cfssl not found: running bench/setup.sh (apt-get install golang-cfssl)');
  const r = spawnSync('sh', [join(ROOT, 'bench', 'setup.sh')], { stdio: 'inherit' });
  if (r.status !== 0) console.log('bench/setup.sh could not install cfssl; benchmark 2 will print its figures with no floor and no ratio');
}

function runOne(entry: BenchmarkEntry, flags: string[], budgetSeconds: number): Promise<Ran> {
  const started = Date.now();
  return new Promise((resolveRan) => {
    const child = fork(join(HERE, 'child.js'), [String(entry.id), ...flags], { stdio: 'inherit' });
    let msg: ChildMessage | undefined;
    const timer = setTimeout(() => {
      console.error(`  [${entry.id}] over its ${budgetSeconds} s budget: stopped`);
      child.kill('SIGKILL');
    }, budgetSeconds * 1000);
    child.on('message', (m) => {
      msg = m as ChildMessage;
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      const seconds = (Date.now() - started) / 1000;
      if (msg?.ok === true) resolveRan({ entry, seconds, outcome: msg.outcome, error: undefined });
      else {
        const error = msg?.ok === false ? msg.error : signal !== null ? `killed by ${signal} (budget ${budgetSeconds} s)` : `exited with code ${code}`;
        resolveRan({ entry, seconds, outcome: undefined, error });
      }
    });
  });
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const flags = [...(args.full ? ['--full'] : []), ...(args.quick ? ['--quick'] : []), ...(args.agents === undefined ? [] : [args.agents])];
  const selected = BENCHMARKS.filter((b) => args.only === undefined || args.only.has(b.id));
  const started = new Date();
  console.log(`sigil benchmarks — ${started.toISOString()} — ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), node ${process.version}`);
  console.log(args.full ? 'mode: --full (full counts)' : args.quick ? 'mode: --quick (smoke counts; figures are not meaningful)' : 'mode: default (reduced counts where noted; --full for all)');
  if (selected.some((b) => b.id === 2)) ensureCfssl();

  const ran: Ran[] = [];
  for (const entry of selected) {
    console.log(`\n== ${entry.id}. ${entry.title}`);
    const r = await runOne(entry, flags, args.full ? entry.budgetSeconds.full : entry.budgetSeconds.normal);
    console.log(`  [${entry.id}] ${r.error === undefined ? 'done' : `FAILED: ${r.error}`} in ${r.seconds.toFixed(1)} s`);
    ran.push(r);
  }

  const rows: BenchRow[] = ran.flatMap((r) => r.outcome?.rows ?? r.entry.rows.map((x) => unmeasured(r.entry.id, x.what, x.target)));
  const totalSeconds = (Date.now() - started.getTime()) / 1000;
  console.log(`\n${textTable(rows)}\n`);
  const notes = ran.flatMap((r) => [
    ...(r.error === undefined ? [] : [`${r.entry.id}: not measured: ${r.error}`]),
    ...(r.outcome?.notes ?? []).map((n) => `${r.entry.id}: ${n}`),
  ]);
  for (const n of notes) console.log(`note ${n}`);
  console.log(`\ntotal ${totalSeconds.toFixed(0)} s`);

  const summary = {
    date: started.toISOString(),
    totalSeconds,
    mode: args.full ? 'full' : args.quick ? 'quick' : 'default',
    machine: { cores: cpus().length, cpu: cpus()[0]?.model, memoryBytes: totalmem(), kernel: release(), node: process.version },
    rows,
    notes,
    benchmarks: ran.map((r) => ({ id: r.entry.id, title: r.entry.title, seconds: r.seconds, error: r.error, details: r.outcome?.details })),
    markdown: markdownTable(rows),
  };
  const dir = join(ROOT, 'bench', 'results');
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true });
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  writeFileSync(join(dir, `bench-${stamp}.json`), `${JSON.stringify(summary, null, 2)}\n`);
  writeFileSync(join(dir, 'latest.json'), `${JSON.stringify(summary, null, 2)}\n`);
  console.log(`summary: bench/results/bench-${stamp}.json (and latest.json)`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
