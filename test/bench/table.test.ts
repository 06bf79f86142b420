import test from 'ava';
import { ABSOLUTE, millis, type BenchRow } from '../../bench/support/result.js';
import { markdownTable } from '../../bench/support/table.js';

const row = (r: Partial<BenchRow>): BenchRow => ({ bench: 9, what: 'w', figure: millis(5), floor: null, ratio: null, target: '<= 1 s', met: null, ...r });
const line = (r: BenchRow): string => markdownTable([r]).split('\n')[2]!;

test('an absolute row says so in the floor column and prints no ratio', (t) => {
  t.is(line(row({ floor: ABSOLUTE, met: true })), '| 9 | w | 5.00 ms | none (absolute) | — | <= 1 s | yes |');
});

test('a floor that could not be measured names why', (t) => {
  t.is(line(row({ floor: { none: 'cfssl not installed' } })), '| 9 | w | 5.00 ms | none (cfssl not installed) | — | <= 1 s | — |');
});

test('a measured floor prints its text and the ratio; a missed target prints NO', (t) => {
  t.is(line(row({ floor: millis(2.5), ratio: 2, met: false })), '| 9 | w | 5.00 ms | 2.50 ms | 2.00 | <= 1 s | NO |');
});
