/**
 * docs/federation.md's walkthrough runs as written: the `sh` block after `<!-- walkthrough -->`
 * is run by bash in an empty directory with `sigil` (this checkout's bin/sigil.js) on the PATH,
 * on free ports; it must exit 0 having printed the peer's bundle document.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT, SIGIL_BIN } from '../agent/support/processes.js';
import { freePort } from '../process/support/under-test.js';

function walkthrough(): string {
  const doc = readFileSync(join(REPO_ROOT, 'docs/federation.md'), 'utf8');
  const m = /<!-- walkthrough -->\n```sh\n([\s\S]*?)\n```/.exec(doc);
  if (m === null) throw new Error('docs/federation.md has no walkthrough block');
  return m[1] as string;
}

test('the two-domain walkthrough of docs/federation.md runs as written', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-fed-doc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bin = join(dir, 'bin');
  const work = join(dir, 'work');
  for (const d of [bin, work]) {
    rmSync(d, { recursive: true, force: true });
    (await import('node:fs')).mkdirSync(d);
  }
  writeFileSync(join(bin, 'sigil'), `#!/bin/sh\nexec "${process.execPath}" "${SIGIL_BIN}" "$@"\n`);
  chmodSync(join(bin, 'sigil'), 0o755);
  writeFileSync(join(dir, 'walkthrough.sh'), walkthrough());
  const ports = { A_AGENT_PORT: await freePort(), A_BUNDLE_PORT: await freePort(), B_AGENT_PORT: await freePort(), B_BUNDLE_PORT: await freePort() };
  const child = spawn('bash', [join(dir, 'walkthrough.sh')], {
    cwd: work,
    env: { PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`, ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])) },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
  const timer = setTimeout(() => {
    try {
      process.kill(-(child.pid as number), 'SIGKILL');
    } catch {
      // already gone
    }
  }, 180_000);
  const code = await new Promise<number | null>((r) => child.once('close', (c) => r(c)));
  clearTimeout(timer);
  const logs = ['a', 'b'].map((s) => {
    try {
      return readFileSync(join(work, s, 'server.log'), 'utf8').slice(-2000);
    } catch {
      return '';
    }
  });
  t.is(code, 0, `${out}\n${logs.join('\n')}`);
  t.regex(out, /federation relationship with spiffe:\/\/other\.org created/);
  t.regex(out, /"spiffe_sequence"/);
  t.regex(out, /"use":"x509-svid"/);
  t.regex(out, /Last error:\s+-/);
  t.notRegex(out + logs.join(''), /PRIVATE KEY/);
});
