/**
 * The neutral SQL layer writes `?` parameters; PostgreSQL's extended protocol wants `$1, $2, …`.
 * The rewrite skips quoted text, quoted identifiers and comments, so a `?` inside them is
 * kept. Dollar-quoted bodies (`$$ … $$`) are not recognised: only migrations use them, and
 * migrations run as parameterless DDL that is never rewritten.
 */

/** Rewrites `?` placeholders outside quotes and comments into `$1, $2, …`; returns the text and the count. */
export function toPositionalSql(sql: string): { text: string; params: number } {
  let out = '';
  let n = 0;
  let i = 0;
  while (i < sql.length) {
    const c = sql[i] as string;
    const next = sql[i + 1];
    if (c === "'" || c === '"') {
      // A doubled quote inside is an escaped quote: the scan simply closes and reopens.
      const end = sql.indexOf(c, i + 1);
      const stop = end === -1 ? sql.length : end + 1;
      out += sql.slice(i, stop);
      i = stop;
    } else if (c === '-' && next === '-') {
      const end = sql.indexOf('\n', i);
      const stop = end === -1 ? sql.length : end + 1;
      out += sql.slice(i, stop);
      i = stop;
    } else if (c === '/' && next === '*') {
      const end = sql.indexOf('*/', i + 2);
      const stop = end === -1 ? sql.length : end + 2;
      out += sql.slice(i, stop);
      i = stop;
    } else if (c === '?') {
      n++;
      out += `$${n}`;
      i++;
    } else {
      out += c;
      i++;
    }
  }
  return { text: out, params: n };
}
