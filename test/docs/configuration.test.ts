/**
 * docs/configuration.md stays in step with the config schemas: every key of the server and
 * agent schemas has a row (and no row names a key that does not exist), each documented
 * default is the schema's default, required keys say so, and enum rows list every value.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { z } from 'zod';
import { agentConfigSchema } from '../../src/agent/config.js';
import { serverConfigSchema } from '../../src/server/config.js';
import { schemaKeys } from './schema-keys.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const DOC = readFileSync(join(ROOT, 'docs/configuration.md'), 'utf8');

interface Row {
  readonly key: string;
  readonly default: string;
  readonly meaning: string;
}

/** The table rows under the `## <title>` heading, up to the next `## ` heading. */
function rowsOf(title: string): Row[] {
  const start = DOC.split('\n').findIndex((l) => l.startsWith(`## ${title}`));
  if (start === -1) throw new Error(`docs/configuration.md has no "## ${title}" section`);
  const rows: Row[] = [];
  for (const line of DOC.split('\n').slice(start + 1)) {
    if (line.startsWith('## ')) break;
    const m = /^\|\s*`([A-Za-z0-9_.]+)`\s*\|([^|]*)\|(.*)\|\s*$/.exec(line);
    if (m !== null) rows.push({ key: m[1] as string, default: (m[2] as string).trim(), meaning: (m[3] as string).trim() });
  }
  return rows;
}

function expectedDefault(value: unknown): string {
  return `\`${typeof value === 'string' ? value : JSON.stringify(value)}\``;
}

const SECTIONS: [string, z.ZodType][] = [
  ['Server', serverConfigSchema],
  ['Agent', agentConfigSchema],
];

for (const [title, schema] of SECTIONS) {
  test(`${title}: every schema key is documented once and every documented key exists`, (t) => {
    const documented = rowsOf(title).map((r) => r.key);
    const keys = schemaKeys(schema).map((k) => k.key);
    t.deepEqual(documented.filter((k, i) => documented.indexOf(k) !== i), [], 'keys documented twice');
    t.deepEqual(keys.filter((k) => !documented.includes(k)), [], `keys missing from docs/configuration.md ## ${title}`);
    t.deepEqual(documented.filter((k) => !keys.includes(k)), [], `documented keys that the ${title.toLowerCase()} schema does not have`);
  });

  test(`${title}: documented defaults, required markers and enum values match the schema`, (t) => {
    const rows = new Map(rowsOf(title).map((r) => [r.key, r]));
    for (const k of schemaKeys(schema)) {
      const row = rows.get(k.key);
      if (row === undefined) continue;
      if (k.default !== undefined) t.is(row.default, expectedDefault(k.default), `${k.key}: default`);
      else if (k.optional) t.false(row.default.startsWith('`') || row.default === 'required', `${k.key} has no schema default: say what applies instead, e.g. "(dataDir)/admin.sock" or "none"`);
      else t.is(row.default, 'required', `${k.key} is required`);
      for (const option of k.options) t.true(row.meaning.includes(`\`${option}\``), `${k.key}: value ${option} is not listed`);
      t.true(row.meaning.length > 10, `${k.key}: say what it means`);
    }
  });
}
