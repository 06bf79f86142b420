/**
 * A strict JSON parser for log lines: JSON.parse keeps the last of two equal keys without a
 * word, while strict parsers (and many log pipelines) refuse such a line or drop a field. This
 * one throws on any key repeated in one object, and on anything that is not JSON.
 */

/** Parses one JSON text; throws on a repeated key (naming it), trailing text or bad syntax. */
export function parseStrictJson(text: string): unknown {
  let i = 0;
  const fail = (what: string): never => {
    throw new SyntaxError(`${what} at offset ${i} of ${JSON.stringify(text.length > 200 ? `${text.slice(0, 200)}…` : text)}`);
  };
  const ws = (): void => {
    while (i < text.length && ' \t\n\r'.includes(text[i] as string)) i++;
  };
  const str = (): string => {
    if (text[i] !== '"') fail('string expected');
    const start = i;
    i++;
    while (i < text.length && text[i] !== '"') {
      if (text[i] === '\\') i++;
      else if ((text.charCodeAt(i) ?? 0) < 0x20) fail('control character in string');
      i++;
    }
    if (text[i] !== '"') fail('unterminated string');
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const value = (depth: number): unknown => {
    if (depth > 200) fail('nesting too deep');
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const out: Record<string, unknown> = {};
      const seen = new Set<string>();
      ws();
      if (text[i] === '}') {
        i++;
        return out;
      }
      for (;;) {
        ws();
        const key = str();
        if (seen.has(key)) fail(`duplicate key ${JSON.stringify(key)}`);
        seen.add(key);
        ws();
        if (text[i] !== ':') fail('":" expected');
        i++;
        Object.defineProperty(out, key, { value: value(depth + 1), enumerable: true, writable: true, configurable: true });
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return out;
        }
        fail('"," or "}" expected');
      }
    }
    if (c === '[') {
      i++;
      const out: unknown[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return out;
      }
      for (;;) {
        out.push(value(depth + 1));
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return out;
        }
        fail('"," or "]" expected');
      }
    }
    if (c === '"') return str();
    const m = /^(?:-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)/.exec(text.slice(i));
    if (m === null) return fail('value expected');
    i += m[0].length;
    return JSON.parse(m[0]) as unknown;
  };
  const out = value(0);
  ws();
  if (i !== text.length) fail('trailing text');
  return out;
}

/** Every non-empty line of `output` that is not strict JSON, with the parser's complaint. */
export function nonStrictJsonLines(output: string): string[] {
  const bad: string[] = [];
  for (const line of output.split('\n')) {
    if (line.trim() === '') continue;
    try {
      parseStrictJson(line);
    } catch (err) {
      bad.push(`${(err as Error).message}`);
    }
  }
  return bad;
}
