// Restates an ava run's result as one closing line, counted from ava's own per-test lines:
// "ava: <passed> passed, <failed> failed[, <n> skipped][, <n> other failures]". ava prints its
// "N tests passed" summary only when nothing failed, so passes are counted from the ✔ lines
// (a known failure, "✔ [expected fail]", is not a pass) and failures from the "✘ [fail]:" lines
// that are tests; failed hooks, uncaught exceptions, files that exited early, timeouts and tests
// left unrun are the "other failures" (the other ✘ lines). Reads the log file named by its
// argument, or standard input.
import { readFileSync } from 'node:fs';

const text = readFileSync(process.argv[2] ?? 0, 'utf8');
// Colour codes, should a terminal have been faked.
const ANSI = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g');
let passed = 0;
let failed = 0;
let skipped = 0;
let other = 0;
for (const raw of text.split('\n')) {
  const line = raw.replace(ANSI, '').trim();
  if (line.startsWith('✔ ')) {
    if (!line.startsWith('✔ [expected fail]')) passed++;
  } else if (line.startsWith('✘ [fail]: ')) {
    if (/ › (before|after|beforeEach|afterEach)( always)? hook\b/.test(line)) other++;
    else failed++;
  } else if (line.startsWith('✘ ')) {
    other++;
  } else if (line.startsWith('- [skip] ')) {
    skipped++;
  }
}
console.log(`ava: ${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}${other > 0 ? `, ${other} other failures` : ''}`);
