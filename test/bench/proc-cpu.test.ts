import test from 'ava';
import { processCpuSeconds, statCpuTicks } from '../../bench/support/proc-cpu.js';

// Fields 14 and 15 (utime 111, stime 222) after a comm holding spaces and parentheses.
const STAT = '4242 (sigil) (x y) S 1 4242 4242 0 -1 4194560 900 0 0 0 111 222 0 0 20 0 11 0 5000 1000000 2000 18446744073709551615';

test('utime + stime are read after the last parenthesis of the comm', (t) => {
  t.is(statCpuTicks(STAT), 333);
});

test('a line whose fields are not there is refused', (t) => {
  t.throws(() => statCpuTicks('4242 (sigil) S 1 2'));
});

test("the bench process's own CPU time grows while it computes", (t) => {
  const before = processCpuSeconds(process.pid);
  let after = before;
  let x = 0;
  // Computes until the kernel has counted at least one more tick (a count, not a timing).
  for (let i = 0; i < 5000 && after === before; i++) {
    for (let j = 0; j < 100_000; j++) x += Math.sqrt(j);
    after = processCpuSeconds(process.pid);
  }
  t.true(x > 0);
  t.true(after > before);
});
