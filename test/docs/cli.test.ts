/**
 * docs/cli.md cannot drift from the CLI: it is checked against the command definitions
 * (src/cli/definitions.ts, from which the parser and `--help` are built) and against the real
 * `--help` of every command, run as a child process whose exit code and standard error are
 * checked too (a `--help` that crashes, or prints to stderr, fails here).
 *
 * - every command has its `## sigil <command>` section and every leaf its table row, whose
 *   flags are exactly the leaf's (common flags may stand in the page's or section's intro);
 * - the "Coming from SPIRE" table lists every SPIRE command of the definitions with its Sigil
 *   form and every SPIRE flag name that differs from ours, and nothing else.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ADMIN, COMMANDS, WORKLOAD, walkCommands, type CommandDef, type OptionDef } from '../../src/cli/definitions.js';
import { described, ROOT, sigil } from '../helpers/cli.js';

const DOC = readFileSync(join(ROOT, 'docs/cli.md'), 'utf8');
/** The sentence of the introduction naming the flags common to the admin commands. */
const ADMIN_COMMON = /Common flags of the admin commands:[\s\S]*?\n\n/.exec(DOC)?.[0] ?? '';

function section(title: string): string | undefined {
  const start = DOC.indexOf(`\n## ${title}\n`);
  if (start === -1) return undefined;
  const end = DOC.indexOf('\n## ', start + 1);
  return DOC.slice(start, end === -1 ? undefined : end);
}

/** Table rows of `text` as arrays of cells (escaped pipes kept inside their cell). */
function rows(text: string): string[][] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('| ') && !l.startsWith('|---'))
    .map((l) =>
      l
        .trim()
        .slice(1, -1)
        .split(/(?<!\\)\|/)
        .map((c) => c.trim()),
    );
}

/** `--flag` names written in `text`. */
function flagsIn(text: string): Set<string> {
  return new Set([...text.matchAll(/(?<![\w-])--([a-z][a-z0-9-]*)/g)].map((m) => m[1] as string));
}

const leaves = walkCommands().filter((c) => c.def.run !== undefined);

test('every command has its section; every leaf its row naming exactly its flags', (t) => {
  const documented = [...DOC.matchAll(/^## sigil ([a-z0-9]+)$/gm)].map((m) => m[1] as string);
  t.deepEqual([...documented].sort(), COMMANDS.map((c) => c.name).sort(), 'the ## sigil sections are the top-level commands');
  for (const { path, def } of leaves) {
    const [top, ...rest] = path as [string, ...string[]];
    const text = section(`sigil ${top}`) ?? '';
    // the shared flag groups may be named once: the admin ones in the introduction, the Workload API ones before the section's table
    const beforeTable = text.slice(0, text.indexOf('\n| '));
    const common = (o: OptionDef): boolean => (ADMIN.includes(o) && flagsIn(ADMIN_COMMON).has(o.name)) || (WORKLOAD.includes(o) && flagsIn(beforeTable).has(o.name));
    const sub = rest.join(' ');
    const table = rows(text).filter((r) => r[0] !== 'subcommand' && r[0] !== 'flags');
    // a top-level leaf (demo, helper) has one row: flags | what it does
    const row = sub === '' ? table[0] : table.find((r) => r[0] === `\`${sub}\``);
    if (row === undefined) {
      t.fail(`docs/cli.md ## sigil ${top} has no row for \`${sub}\``);
      continue;
    }
    const written = flagsIn((sub === '' ? row[0] : row[1]) ?? '');
    const own = new Set((def.options ?? []).map((o) => o.name));
    for (const o of def.options ?? []) t.true(written.has(o.name) || common(o), `docs/cli.md: sigil ${path.join(' ')} does not mention --${o.name}`);
    for (const name of written) t.true(own.has(name) || name === 'help', `docs/cli.md: the row of sigil ${path.join(' ')} names --${name}, which it does not have`);
  }
  for (const [top] of COMMANDS.map((c) => [c.name])) {
    const text = section(`sigil ${top}`) ?? '';
    const defined = new Set(leaves.filter((l) => l.path[0] === top && l.path.length > 1).map((l) => `\`${l.path.slice(1).join(' ')}\``));
    for (const r of rows(text)) {
      if (r[0] === 'subcommand' || r[0] === 'flags' || defined.size === 0) continue;
      t.true(defined.has(r[0] as string), `docs/cli.md ## sigil ${top} documents ${r[0]}, which is no subcommand`);
    }
  }
});

test('the SPIRE table lists every SPIRE command with its Sigil form and SPIRE flag names, and nothing else', (t) => {
  const text = section('Coming from SPIRE');
  if (text === undefined) {
    t.fail('docs/cli.md has no ## Coming from SPIRE');
    return;
  }
  const table = rows(text).filter((r) => r[0] !== 'SPIRE');
  const expected = new Map<string, { path: string[]; def: CommandDef }>();
  for (const c of walkCommands()) for (const s of c.def.spire ?? []) expected.set(s, c);
  t.deepEqual(table.map((r) => (r[0] ?? '').replace(/`/g, '')).sort(), [...expected.keys()].sort(), 'the SPIRE commands of the table are those of the definitions');
  for (const r of table) {
    const spire = (r[0] ?? '').replace(/`/g, '');
    const c = expected.get(spire);
    if (c === undefined) continue;
    const forms = [`\`sigil ${c.path.join(' ')}\``, ...(c.def.isDefault === true ? [`\`sigil ${c.path.slice(0, -1).join(' ')}\``] : [])];
    t.true(forms.some((f) => (r[1] ?? '').startsWith(f)), `${spire}: the table says ${r[1]}, the definitions sigil ${c.path.join(' ')}`);
    for (const o of c.def.options ?? []) {
      for (const s of o.spire ?? []) {
        const spelled = `\`-${s.name}\`${s.seconds === true ? ' (seconds)' : ''} = \`--${o.name}\``;
        t.true((r[2] ?? '').includes(spelled), `${spire}: the table does not say ${spelled}`);
      }
    }
  }
});

test('every --help exits 0, prints its usage to stdout only, and lists exactly the defined flags and subcommands', async (t) => {
  const all: { path: string[]; def?: CommandDef }[] = [{ path: [] }, ...walkCommands()];
  const results = await Promise.all(all.map(async (c) => ({ ...c, args: [...c.path, '--help'], run: await sigil([...c.path, '--help']) })));
  for (const { path, def, args, run } of results) {
    const what = described(args, run);
    t.is(run.code, 0, what);
    t.is(run.stderr, '', what);
    t.true(run.stdout.startsWith(`Usage: ${['sigil', ...path].join(' ')} `), what);
    const [optionsPart = '', commandsPart = ''] = run.stdout.split(/^Commands:$/m);
    const listed = new Set([...optionsPart.matchAll(/^ {2}(?:-[a-zA-Z], )?--([a-z][a-z0-9-]*)/gm)].map((m) => m[1] as string));
    const expectedFlags = new Set([...(def?.options ?? []).map((o) => o.name), 'help', ...(def === undefined ? ['version'] : [])]);
    t.deepEqual([...listed].sort(), [...expectedFlags].sort(), `the flags of ${what}`);
    const subs = [...commandsPart.matchAll(/^ {2}([a-z0-9-]+)/gm)].map((m) => m[1] as string).filter((s) => s !== 'help');
    t.deepEqual(subs, (def === undefined ? COMMANDS : (def.commands ?? [])).map((c) => c.name), `the subcommands of ${what}`);
  }
});
