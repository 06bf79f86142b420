/**
 * docs/client.md shows the examples under examples/client/ verbatim, and every example is
 * shown; the examples themselves run in test/e2e/mtls.test.ts, so the page's code runs as shown.
 */
import test from 'ava';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './service-process.js';

const doc = readFileSync(join(ROOT, 'docs/client.md'), 'utf8');
const blocks = new Map<string, string>();
for (const m of doc.matchAll(/```js (examples\/client\/[\w.-]+)\n([\s\S]*?)\n```/g)) blocks.set(m[1]!, m[2]!);

test('every example file is in docs/client.md, byte for byte', (t) => {
  const files = readdirSync(join(ROOT, 'examples/client')).filter((f) => f.endsWith('.js'));
  t.true(files.length >= 9);
  for (const f of files) {
    const path = `examples/client/${f}`;
    t.is(blocks.get(path), readFileSync(join(ROOT, path), 'utf8').replace(/\n$/, ''), path);
  }
});

test('every code block of docs/client.md names an existing example', (t) => {
  for (const path of blocks.keys()) t.notThrows(() => readFileSync(join(ROOT, path)), path);
  t.is(blocks.size, readdirSync(join(ROOT, 'examples/client')).filter((f) => f.endsWith('.js')).length);
});
