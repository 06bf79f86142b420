/**
 * docs/cli.md stays in step with the CLI: every command that `sigil --help` lists has a
 * `## sigil <command>` section, no section names a command that does not exist, and every
 * flag a command's `--help` mentions appears in its section.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const SIGIL = join(ROOT, 'bin/sigil.js');
const DOC = readFileSync(join(ROOT, 'docs/cli.md'), 'utf8');
/** The text before the first command section documents the flags common to admin commands. */
const COMMON = DOC.slice(0, DOC.indexOf('\n## '));

async function help(args: string[]): Promise<string> {
  const r = await promisify(execFile)(process.execPath, [SIGIL, ...args, '--help'], { cwd: ROOT, timeout: 20_000 }).catch((err: { stdout?: string; stderr?: string }) => ({ stdout: err.stdout ?? '', stderr: err.stderr ?? '' }));
  return r.stdout + r.stderr;
}

function section(command: string): string | undefined {
  const start = DOC.indexOf(`\n## sigil ${command}\n`);
  if (start === -1) return undefined;
  const end = DOC.indexOf('\n## ', start + 1);
  return DOC.slice(start, end === -1 ? undefined : end);
}

test('every command and every flag of its --help is documented, and nothing else', async (t) => {
  const top = await help([]);
  const commands = [...top.matchAll(/^ {2}([a-z0-9]+) {2,}/gm)].map((m) => m[1] as string);
  t.true(commands.length >= 8, top);
  const documented = [...DOC.matchAll(/^## sigil ([a-z0-9]+)$/gm)].map((m) => m[1] as string);
  t.deepEqual([...documented].sort(), [...commands].sort());
  for (const command of commands) {
    const text = section(command) ?? '';
    // `sigil agent` dispatches to subcommands with usages of their own: check those too.
    const own = await help([command]);
    const subs = command === 'agent' ? [...own.matchAll(/^ {2}([a-z]+) {2,}/gm)].map((m) => m[1] as string) : [];
    const usages = [own, ...(await Promise.all(subs.map((s) => help([command, s]))))].join('\n');
    const flags = new Set([...usages.matchAll(/--[a-z][a-z0-9-]*/g)].map((m) => m[0]).filter((f) => f !== '--help'));
    for (const flag of flags) t.true(text.includes(`\`${flag}`) || COMMON.includes(`\`${flag}`), `docs/cli.md ## sigil ${command} does not mention ${flag}`);
  }
});
