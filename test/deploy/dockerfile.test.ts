/**
 * deploy/Dockerfile, linted by structure (no Docker engine here): multi-stage, runs as a
 * non-root numeric user, no secret in any layer, every file it copies from the context
 * exists and passes deploy/Dockerfile.dockerignore, and the runtime stage gets what the
 * code loads at run time (compiled JS, protos, the peercred addon).
 */
import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PEERCRED_ADDON_PATH } from '../../src/common/peer-credentials.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

interface Instruction {
  readonly op: string;
  readonly args: string;
  readonly stage: number;
}

/** Splits a Dockerfile into instructions: comments dropped, `\` continuations joined. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let stage = -1;
  let pending = '';
  for (const raw of text.split('\n')) {
    if (pending === '' && /^\s*#/.test(raw)) continue;
    const line = raw.replace(/\s+$/, '');
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const full = (pending + line).trim();
    pending = '';
    if (full === '') continue;
    const [op = '', ...rest] = full.split(/\s+/);
    if (op.toUpperCase() === 'FROM') stage++;
    out.push({ op: op.toUpperCase(), args: rest.join(' '), stage });
  }
  return out;
}

/** .dockerignore semantics, enough for our file: `*`, `**`, `!` exceptions, last match wins, a match on a parent folder counts. */
function ignoredBy(patterns: readonly string[]): (path: string) => boolean {
  const rules = patterns
    .map((p) => p.trim())
    .filter((p) => p !== '' && !p.startsWith('#'))
    .map((p) => {
      const negate = p.startsWith('!');
      const body = (negate ? p.slice(1) : p).replace(/^\/+|\/+$/g, '');
      const re = body
        .split('/')
        .map((seg) => (seg === '**' ? '.*' : seg.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')))
        .join('/')
        .replace(/\.\*\//g, '(?:.*/)?');
      return { negate, re: new RegExp(`^${re}$`) };
    });
  return (path) => {
    const parts = path.split('/');
    let ignored = false;
    for (const r of rules) {
      for (let i = 1; i <= parts.length; i++) {
        if (r.re.test(parts.slice(0, i).join('/'))) {
          // An exception for a parent does not un-ignore a child matched by a later rule.
          ignored = !r.negate;
          break;
        }
      }
    }
    return ignored;
  };
}

const dockerfile = parseDockerfile(readFileSync(join(ROOT, 'deploy/Dockerfile'), 'utf8'));
const ignored = ignoredBy(readFileSync(join(ROOT, 'deploy/Dockerfile.dockerignore'), 'utf8').split('\n'));
const lastStage = Math.max(...dockerfile.map((i) => i.stage));
const runtime = dockerfile.filter((i) => i.stage === lastStage);

/** Sources and flags of a COPY/ADD (the last word is the destination). */
function copyParts(i: Instruction): { flags: string[]; sources: string[]; dest: string } {
  const words = i.args.split(/\s+/);
  const flags = words.filter((w) => w.startsWith('--'));
  const paths = words.filter((w) => !w.startsWith('--'));
  return { flags, sources: paths.slice(0, -1), dest: paths.at(-1) ?? '' };
}

test('multi-stage: a named build stage, a runtime stage that only copies from it', (t) => {
  const froms = dockerfile.filter((i) => i.op === 'FROM');
  t.true(froms.length >= 2);
  t.regex(froms[0]?.args ?? '', / AS build$/i);
  t.regex(froms.at(-1)?.args ?? '', / AS runtime$/i);
  t.deepEqual(dockerfile.filter((i) => i.op === 'ADD'), [], 'use COPY, not ADD');
  for (const c of runtime.filter((i) => i.op === 'COPY')) t.true(copyParts(c).flags.includes('--from=build'), c.args);
  // No compiler or package install in the image that runs.
  for (const r of runtime.filter((i) => i.op === 'RUN')) t.notRegex(r.args, /apt-get|npm (ci|install)|g\+\+/);
});

test('the runtime stage runs as a fixed non-root uid, with an exec-form entrypoint', (t) => {
  const users = runtime.filter((i) => i.op === 'USER');
  t.is(users.length, 1);
  const [uid, gid] = (users[0]?.args ?? '').split(':');
  t.regex(uid ?? '', /^[1-9]\d*$/);
  t.regex(gid ?? '', /^[1-9]\d*$/);
  t.is(uid, '10001', 'deploy/kubernetes uses runAsUser 10001');
  const userAt = runtime.findIndex((i) => i.op === 'USER');
  t.true(runtime.every((i, n) => n < userAt || i.op !== 'RUN'), 'nothing runs as root after USER');
  const entry = runtime.find((i) => i.op === 'ENTRYPOINT');
  t.deepEqual(JSON.parse(entry?.args ?? 'null'), ['node', '/opt/sigil/bin/sigil.js']);
});

test('no secret in any layer: no secret-like ARG/ENV, nothing key-like copied, context is an allowlist', (t) => {
  for (const i of dockerfile.filter((x) => x.op === 'ARG' || x.op === 'ENV')) t.notRegex(i.args, /kek|token|secret|password|private|key/i, `${i.op} ${i.args}`);
  for (const i of dockerfile.filter((x) => x.op === 'COPY')) t.notRegex(i.args, /\.pem|\.key|kek|join-token|\.sigil-demo|\.env/i, i.args);
  for (const path of ['.sigil-demo/kek', '.sigil-demo/join-token', 'node_modules/x/index.js', 'dist/src/cli/main.js', '.git/config', 'kek', 'some/dir/server.key', 'src/x/fixture.pem', '.env', 'test/x.test.ts']) {
    t.true(ignored(path), `${path} must stay out of the build context`);
  }
});

test('every file the build stage copies from the context exists and is in the context', (t) => {
  const fromContext = dockerfile.filter((i) => i.op === 'COPY' && !copyParts(i).flags.some((f) => f.startsWith('--from=')));
  t.true(fromContext.length > 0);
  for (const c of fromContext) {
    for (const src of copyParts(c).sources) {
      t.true(existsSync(join(ROOT, src)), `${src} does not exist`);
      t.false(ignored(src.replace(/\/$/, '')), `${src} is excluded by Dockerfile.dockerignore`);
    }
  }
  // What the runtime loads: compiled code, protos, the native addon at the path the agent looks for.
  const runtimeSources = runtime.filter((i) => i.op === 'COPY').flatMap((i) => copyParts(i).sources);
  for (const want of ['/src/dist/src/', '/src/proto/', '/src/node_modules/', '/src/bin/', '/src/package.json', '/src/native/peercred/build/Release/peercred.node']) {
    t.true(runtimeSources.includes(want), want);
  }
  // …and that path is the one the loader of the addon looks for.
  t.true(runtimeSources.includes(`/src/${PEERCRED_ADDON_PATH}`), PEERCRED_ADDON_PATH);
});
