/**
 * What a child run as another user (`nobody` through setpriv) needs from this checkout, copied
 * into a folder every user can enter and read. The checkout may sit where others cannot enter
 * (a home directory, a `mktemp -d` folder, mode 0700): a child run as `nobody` could then load
 * no module and no .proto file from it (issue 11, item 8). Tests that run processes as another
 * uid point them at this copy instead, wherever the checkout is; the copy is made once per test
 * process and removed when it exits.
 */
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';

/** What to copy: npm packages (with their dependencies) and paths relative to the checkout. */
export interface ReadableCopySpec {
  readonly packages: readonly string[];
  readonly paths?: readonly string[];
}

const copies = new Map<string, string>();

/** The folder of package `name` as Node resolves it from `fromDir` (node_modules up the tree), inside `root`. */
function packageDir(name: string, fromDir: string, root: string): string {
  for (let dir = fromDir; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (dir === root || dirname(dir) === dir) throw new Error(`package ${name} not found from ${fromDir}`);
  }
}

/** Every package folder `names` need at run time: themselves and their (optional) dependencies. */
function closure(names: readonly string[], root: string): Set<string> {
  const found = new Set<string>();
  const visit = (name: string, fromDir: string): void => {
    const dir = packageDir(name, fromDir, root);
    if (found.has(dir)) return;
    found.add(dir);
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> };
    for (const dep of Object.keys(pkg.dependencies ?? {})) visit(dep, dir);
    for (const dep of Object.keys(pkg.optionalDependencies ?? {})) {
      try {
        visit(dep, dir);
      } catch {
        // an optional dependency that is not installed is not needed
      }
    }
  };
  for (const name of names) visit(name, root);
  return found;
}

/** Opens `path` to every user: folders 0755, files readable (executables stay executable). */
function openToAll(path: string): void {
  const st = statSync(path);
  if (st.isDirectory()) {
    chmodSync(path, 0o755);
    for (const entry of readdirSync(path)) openToAll(join(path, entry));
  } else {
    chmodSync(path, (st.mode & 0o777) | 0o444);
  }
}

/**
 * A world-readable folder laid out like `root` (the checkout) holding what `spec` names: the
 * packages under node_modules/ as Node would find them, and the listed paths. Same spec, same
 * folder, within one test process.
 */
export function readableCopy(root: string, spec: ReadableCopySpec): string {
  const key = JSON.stringify([root, spec.packages, spec.paths ?? []]);
  const cached = copies.get(key);
  if (cached !== undefined) return cached;
  const dir = mkdtempSync(join(tmpdir(), 'sigil-readable-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  for (const pkg of closure(spec.packages, root)) cpSync(pkg, join(dir, relative(root, pkg)), { recursive: true, dereference: true });
  for (const path of spec.paths ?? []) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    cpSync(join(root, path), join(dir, path), { recursive: true, dereference: true });
  }
  // createRequire(<copy>/package.json) resolves from here, as from the checkout.
  writeFileSync(join(dir, 'package.json'), '{ "name": "sigil-readable-copy", "private": true }\n');
  openToAll(dir);
  copies.set(key, dir);
  return dir;
}
