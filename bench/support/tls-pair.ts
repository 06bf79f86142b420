/**
 * A throwaway self-signed P-256 certificate (CN and DNS SAN `sigil-server`, IP SAN
 * 127.0.0.1) made with openssl in a temp dir, for the bare floors that need TLS on loopback.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A certificate and its key, both PEM. */
export interface TlsPair {
  readonly certPem: string;
  readonly keyPem: string;
}

/** Makes the pair; the key file is removed with its temp dir before this returns. */
export function makeTlsPair(): TlsPair {
  const dir = mkdtempSync(join(tmpdir(), 'sigil-bench-tls-'));
  try {
    const r = spawnSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-subj', '/CN=sigil-server', '-addext', 'subjectAltName=DNS:sigil-server,IP:127.0.0.1'],
      { encoding: 'utf8' },
    );
    if (r.status !== 0) throw new Error(`openssl req failed: ${r.stderr}`);
    return { certPem: readFileSync(join(dir, 'cert.pem'), 'utf8'), keyPem: readFileSync(join(dir, 'key.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
