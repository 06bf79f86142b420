/**
 * `sigil oidc export`: the discovery document and the JWKS written as files for static
 * hosting (a bucket, any web server), at the same paths below `dir` that `sigil oidc serve`
 * answers. Each file is written to a temporary name and renamed, so a reader (or a sync job)
 * sees the old file or the new one, never half of one.
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { OidcDocuments } from './http-server.js';

/** Writes both documents below `dir`; false (nothing written) while there are no keys. */
export async function exportDocuments(docs: OidcDocuments, dir: string): Promise<boolean> {
  const discovery = docs.discovery;
  const jwks = docs.jwks;
  if (discovery === undefined || jwks === undefined) return false;
  // the JWKS first: a discovery document must never point at keys not written yet
  for (const [path, body] of [[docs.config.jwksPath, jwks.body], [docs.config.discoveryPath, discovery.body]] as const) {
    const target = join(dir, ...path.split('/').filter((s) => s !== ''));
    await mkdir(dirname(target), { recursive: true, mode: 0o755 });
    const tmp = join(dirname(target), `.${Date.now()}-${process.pid}.tmp`);
    await writeFile(tmp, body, { mode: 0o644 });
    await rename(tmp, target);
  }
  return true;
}
