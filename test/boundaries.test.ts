/**
 * Enforces DESIGN.md's dependency directions between the source folders, and that there
 * are no import cycles between modules. Reads the TypeScript sources, not the build.
 */
import test from 'ava';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

type Layer = 'spiffe' | 'common' | 'plugin' | 'grpc' | 'datastore' | 'ca' | 'server' | 'agent' | 'client' | 'oidc' | 'cli' | 'attestors';

/** Which layers each layer may import (itself included). */
const ALLOWED: Record<Layer, readonly Layer[]> = {
  spiffe: ['spiffe'],
  common: ['common', 'spiffe'],
  plugin: ['plugin', 'common', 'spiffe'],
  grpc: ['grpc', 'common', 'spiffe'],
  datastore: ['datastore', 'plugin', 'common', 'spiffe'],
  ca: ['ca', 'datastore', 'plugin', 'common', 'spiffe'],
  attestors: ['attestors', 'plugin', 'common', 'spiffe'],
  server: ['server', 'ca', 'datastore', 'grpc', 'attestors', 'plugin', 'common', 'spiffe'],
  agent: ['agent', 'grpc', 'attestors', 'plugin', 'common', 'spiffe'],
  client: ['client', 'grpc', 'common', 'spiffe'],
  oidc: ['oidc', 'client', 'common', 'spiffe'],
  cli: ['cli', 'server', 'agent', 'client', 'oidc', 'ca', 'datastore', 'grpc', 'attestors', 'plugin', 'common', 'spiffe'],
};

function layerOf(file: string): Layer | undefined {
  const rel = relative(ROOT, file).split(sep);
  if (rel[0] === 'attestors') return 'attestors';
  if (rel[0] === 'src' && rel[1] !== undefined && rel[1] in ALLOWED) return rel[1] as Layer;
  return undefined;
}

function walk(dir: string, out: string[] = []): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of names) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (p.endsWith('.ts') && !p.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

const IMPORT_RE = /(?:^|\n)\s*(?:import|export)\s[^'";]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(IMPORT_RE)) {
    const spec = m[1] ?? m[2];
    if (spec !== undefined && spec.startsWith('.')) out.push(resolve(dirname(file), spec).replace(/\.js$/, '.ts'));
  }
  return out;
}

const files = [...walk(join(ROOT, 'src')), ...walk(join(ROOT, 'attestors'))];

test('sources exist to check', (t) => {
  t.true(files.length > 0);
  t.true(files.some((f) => layerOf(f) === 'spiffe'));
});

test('imports follow the dependency directions of DESIGN.md', (t) => {
  const violations: string[] = [];
  for (const file of files) {
    const from = layerOf(file);
    if (from === undefined) continue;
    for (const target of importsOf(file)) {
      const to = layerOf(target);
      if (to === undefined) {
        violations.push(`${relative(ROOT, file)} imports ${relative(ROOT, target)}, outside src/ and attestors/`);
      } else if (!ALLOWED[from].includes(to)) {
        violations.push(`${relative(ROOT, file)} (${from}) imports ${relative(ROOT, target)} (${to})`);
      }
    }
  }
  t.deepEqual(violations, []);
});

test('src/spiffe imports no package but jose, @peculiar/x509 and node built-ins', (t) => {
  const bad: string[] = [];
  for (const file of files.filter((f) => layerOf(f) === 'spiffe')) {
    for (const m of readFileSync(file, 'utf8').matchAll(IMPORT_RE)) {
      const spec = m[1] ?? m[2] ?? '';
      if (spec.startsWith('.') || spec.startsWith('node:') || spec === 'jose' || spec.startsWith('@peculiar/') || spec === 'reflect-metadata') continue;
      bad.push(`${relative(ROOT, file)} imports ${spec}`);
    }
  }
  t.deepEqual(bad, []);
});

test('there are no import cycles between modules', (t) => {
  const graph = new Map(files.map((f) => [f, importsOf(f).filter((x) => files.includes(x))]));
  const state = new Map<string, 'visiting' | 'done'>();
  const cycles: string[] = [];
  const stack: string[] = [];
  const visit = (f: string): void => {
    state.set(f, 'visiting');
    stack.push(f);
    for (const next of graph.get(f) ?? []) {
      const s = state.get(next);
      if (s === 'visiting') {
        cycles.push([...stack.slice(stack.indexOf(next)), next].map((p) => relative(ROOT, p)).join(' -> '));
      } else if (s === undefined) visit(next);
    }
    stack.pop();
    state.set(f, 'done');
  };
  for (const f of files) if (!state.has(f)) visit(f);
  t.deepEqual(cycles, []);
});
