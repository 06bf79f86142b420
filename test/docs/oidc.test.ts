/** docs/oidc.md's oidc.yaml table stays in step with the schema: every key once, no key that does not exist, defaults as the schema's. */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { oidcConfigSchema } from '../../src/oidc/config.js';
import { ROOT } from '../helpers/cli.js';
import { schemaKeys } from './schema-keys.js';

const DOC = readFileSync(join(ROOT, 'docs/oidc.md'), 'utf8');

test('every oidc.yaml key is documented once with its default, and every documented key exists', (t) => {
  const start = DOC.indexOf('| key | default | meaning |');
  const table = DOC.slice(start, DOC.indexOf('\n\n', start));
  const rows = [...table.matchAll(/^\| `([A-Za-z.]+)` \| ([^|]*) \|/gm)].map((m) => ({ key: m[1] as string, default: (m[2] as string).trim() }));
  const keys = schemaKeys(oidcConfigSchema);
  t.deepEqual(rows.map((r) => r.key).sort(), keys.map((k) => k.key).sort());
  for (const k of keys) {
    const row = rows.find((r) => r.key === k.key);
    if (k.default !== undefined) t.is(row?.default, `\`${typeof k.default === 'string' ? k.default : JSON.stringify(k.default)}\``, k.key);
    else if (!k.optional) t.is(row?.default, 'required', k.key);
  }
});
