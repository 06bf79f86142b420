/** The final table, as aligned text for the terminal and as Markdown for the README. */
import { isMeasuredFloor, type BenchRow } from './result.js';

const HEADERS = ['#', 'what', 'figure', 'floor (same run)', 'ratio', 'target', 'met?'] as const;

function cells(r: BenchRow): string[] {
  return [
    String(r.bench),
    r.what,
    r.figure?.text ?? 'not measured',
    r.floor === null ? '—' : isMeasuredFloor(r.floor) ? r.floor.text : `none (${r.floor.none})`,
    r.ratio === null ? '—' : `${r.ratio.toFixed(2)}`,
    r.target,
    r.met === null ? '—' : r.met ? 'yes' : 'NO',
  ];
}

/** The rows as a column-aligned text table. */
export function textTable(rows: readonly BenchRow[]): string {
  const all = [[...HEADERS], ...rows.map(cells)];
  const widths = HEADERS.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(all[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...all.slice(1).map(line)].join('\n');
}

/** The rows as a Markdown table. */
export function markdownTable(rows: readonly BenchRow[]): string {
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  return [
    `| ${HEADERS.join(' | ')} |`,
    `|${HEADERS.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${cells(r).map(esc).join(' | ')} |`),
  ].join('\n');
}
