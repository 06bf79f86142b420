/** Parsing and printing of durations written as in config files: `90s`, `5m`, `1h30m`, `24h`, `500ms`. */
import { SigilError } from './errors.js';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;

/** Parses a duration string into milliseconds; throws ERR_INVALID_ARGUMENT on anything else. */
export function parseDuration(text: string): number {
  if (typeof text !== 'string' || text.length === 0 || text.length > 64) {
    throw new SigilError('ERR_INVALID_ARGUMENT', `invalid duration ${JSON.stringify(text)}`, { reason: 'duration' });
  }
  PART.lastIndex = 0;
  let total = 0;
  let consumed = 0;
  let m: RegExpExecArray | null;
  while ((m = PART.exec(text)) !== null) {
    total += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
    consumed = PART.lastIndex;
  }
  if (consumed !== text.length) {
    throw new SigilError('ERR_INVALID_ARGUMENT', `invalid duration ${JSON.stringify(text)}: use forms like 90s, 5m, 1h30m`, {
      reason: 'duration',
    });
  }
  return Math.round(total);
}

/** Formats milliseconds as the shortest duration string (`1h30m`, `45s`, `250ms`). */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  let rest = Math.round(ms);
  let out = '';
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000], ['ms', 1]] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) {
      out += `${n}${unit}`;
      rest -= n * size;
    }
  }
  return out;
}
