/**
 * .ci/run's closing line (scripts/ava-summary.js) against real ava output: ava itself runs a
 * fixture project of passing, failing, skipped, known-failing tests, a failing hook and an
 * uncaught exception, and the line must count what ava ran — also when something failed, where
 * ava prints no "passed" summary of its own.
 */
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const SUMMARY = join(ROOT, 'scripts/ava-summary.js');

/** Runs ava over `files` in a fresh project; its combined output, as .ci/run captures it. */
function runAva(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-ava-summary-'));
  try {
    mkdirSync(join(dir, 't'));
    mkdirSync(join(dir, 'node_modules'));
    symlinkSync(join(ROOT, 'node_modules/ava'), join(dir, 'node_modules/ava'));
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module', ava: { files: ['t/*.test.js'] } }));
    for (const [name, body] of Object.entries(files)) writeFileSync(join(dir, 't', name), `import test from 'ava';\n${body}\n`);
    const r = spawnSync(process.execPath, [join(dir, 'node_modules/ava/entrypoints/cli.mjs')], { cwd: dir, encoding: 'utf8', env: { ...process.env, CI: '1' } });
    return `${r.stdout}${r.stderr}`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function summarise(log: string): string {
  return execFileSync(process.execPath, [SUMMARY], { input: log, encoding: 'utf8' }).trim();
}

test('every test passing: the passes and skips ava ran', (t) => {
  const log = runAva({ 'a.test.js': "test('one', (t) => t.pass());\ntest('two', (t) => t.pass());\ntest.skip('three', (t) => t.pass());" });
  t.regex(log, /2 tests passed/);
  t.is(summarise(log), 'ava: 2 passed, 0 failed, 1 skipped');
});

test('with failures: passes still counted, failed tests apart from failed hooks, crashes and known failures', (t) => {
  const log = runAva({
    'a.test.js': "test('passes', (t) => t.pass());\ntest('fails', (t) => t.is(1, 2));\ntest.failing('known', (t) => t.fail());\ntest.skip('skipped', (t) => t.pass());",
    'b.test.js': "test.before(() => { throw new Error('boom'); });\ntest('never', (t) => t.pass());",
    'c.test.js': "test('c ok', (t) => t.pass());\nsetTimeout(() => { throw new Error('uncaught'); }, 10);\ntest('c later', async (t) => { await new Promise((r) => setTimeout(r, 200)); t.pass(); });",
  });
  t.notRegex(log, /tests? passed/, 'ava prints no passed summary when something failed');
  t.regex(log, /1 test failed/);
  // 2 passes (a › passes, c › c ok); 1 failed test; other: the hook, b's unrun test, c's crash.
  t.is(summarise(log), 'ava: 2 passed, 1 failed, 1 skipped, 3 other failures');
});

test('.ci/run closes with this line, after the test command, keeping its exit status', (t) => {
  const run = readFileSync(join(ROOT, '.ci/run'), 'utf8');
  const lines = run.split('\n').map((l) => l.trim());
  const testAt = lines.findIndex((l) => l.startsWith('npm test'));
  const summaryAt = lines.indexOf('node scripts/ava-summary.js "$log"');
  t.true(testAt >= 0 && summaryAt > testAt, '.ci/run runs npm test, then the summary');
  t.is(lines[summaryAt + 1], 'exit "$rc"');
});
