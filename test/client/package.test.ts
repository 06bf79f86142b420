/**
 * The library as it is published: `npm pack` of this checkout, installed into a clean
 * project with nothing but the package's declared dependencies, must import through both
 * entry points (`sigil/client`, `sigil/spiffe`) and type-check a consumer's TypeScript file
 * against the shipped declarations. The tarball must hold no test or bench code.
 *
 * The pack uses the already built dist/ (`--ignore-scripts` skips the prepack build, which
 * would rebuild dist/ under the other tests). The install takes packages from npm's cache
 * and asks the registry only for what the cache lacks; it skips install scripts, since
 * compiling the daemons' native addons (better-sqlite3, native/peercred) says nothing about
 * the library and would take minutes.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from './service-process.js';

const run = promisify(execFile);
const MINUTES = 60_000;

interface PackResult {
  filename: string;
  files: { path: string }[];
}

const CONSUMER_TS = `import { X509Source, authorizeId, type X509SourceOptions, type SpiffeId } from 'sigil/client';
import { TrustDomain, parseAndValidateJwtSvid } from 'sigil/spiffe';

const options: X509SourceOptions = { timeoutMs: 1000, picker: { hint: 'web' } };

export async function describe(): Promise<string> {
  const source: X509Source = await X509Source.create(options);
  const id: SpiffeId = source.svid.id;
  const td: TrustDomain = TrustDomain.parse('example.org');
  const ok: boolean = authorizeId(id)(id);
  await source.close();
  return \`\${id.toString()} \${td.name} \${ok} \${typeof parseAndValidateJwtSvid}\`;
}

// The declarations are real types, not any: a wrong option is an error.
// @ts-expect-error timeoutMs is a number
export const wrong: X509SourceOptions = { timeoutMs: 'soon' };
`;

test('npm pack yields a package whose sigil/client and sigil/spiffe import and type-check in a clean project', async (t) => {
  t.timeout(8 * MINUTES);
  const dir = mkdtempSync(join(tmpdir(), 'sigil-pack-'));
  try {
    const packed = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: ROOT, maxBuffer: 16 << 20 });
    const [result] = JSON.parse(packed.stdout) as PackResult[];
    const paths = result!.files.map((f) => f.path);
    for (const want of ['dist/src/client/index.js', 'dist/src/client/index.d.ts', 'dist/src/spiffe/index.js', 'dist/src/spiffe/index.d.ts', 'proto/spiffe/workload/workload.proto']) {
      t.true(paths.includes(want), `${want} is in the package`);
    }
    t.deepEqual(paths.filter((p) => /^(dist\/(test|bench|scripts)\/|test\/|src\/|.*\.map$)/.test(p)), [], 'no tests, sources or maps in the package');

    const project = join(dir, 'consumer');
    await run('mkdir', ['-p', project]);
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }));
    await run('npm', ['install', '--prefer-offline', '--ignore-scripts', '--no-audit', '--no-fund', join(dir, result!.filename)], {
      cwd: project,
      maxBuffer: 16 << 20,
    });

    // Only the declared dependencies and what they need: nothing the lock file marks dev-only.
    const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
    const devOnly = Object.entries(lock.packages)
      .filter(([path, p]) => p.dev === true && /^node_modules\/(@[^/]+\/)?[^/]+$/.test(path))
      .map(([path]) => path);
    t.true(devOnly.includes('node_modules/ava'));
    t.deepEqual(devOnly.filter((path) => existsSync(join(project, path))), [], 'no dev dependency is installed');
    t.false(existsSync(join(project, 'node_modules/sigil/dist/test')));

    const imported = await run(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const c = await import('sigil/client'); const s = await import('sigil/spiffe');
         const id = s.SpiffeId.parse('spiffe://example.org/web');
         console.log(JSON.stringify({ client: typeof c.X509Source.create, watch: typeof c.WorkloadApiClient, spiffe: id.trustDomain.name, authorized: c.authorizeId(id)(id) }));`,
      ],
      { cwd: project },
    );
    t.deepEqual(JSON.parse(imported.stdout), { client: 'function', watch: 'function', spiffe: 'example.org', authorized: true });

    // A consumer's TypeScript against the shipped declarations (checked too: no skipLibCheck).
    writeFileSync(join(project, 'consumer.ts'), CONSUMER_TS);
    writeFileSync(
      join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', strict: true, noEmit: true, types: ['node'], typeRoots: [join(ROOT, 'node_modules/@types')] },
        files: ['consumer.ts'],
      }),
    );
    let tscErrors = '';
    try {
      await run(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: project });
    } catch (err) {
      tscErrors = String((err as { stdout?: string }).stdout ?? err);
    }
    t.is(tscErrors, '', 'tsc reports no error');
    t.true(readdirSync(join(project, 'node_modules/sigil/dist/src/client')).includes('x509-source.d.ts'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
