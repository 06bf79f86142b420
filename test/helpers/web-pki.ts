/** A throwaway WebPKI (a test CA and a server certificate for localhost and 127.0.0.1), made with the real openssl. */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Files of a test WebPKI. */
export interface WebPki {
  readonly caFile: string;
  readonly caPem: string;
  readonly certFile: string;
  readonly keyFile: string;
}

/** Creates `ca.pem`, `server.pem` (leaf, DNS:localhost, IP:127.0.0.1) and `server.key` (0600) in `dir`. */
export function createWebPki(dir: string, name = 'web'): WebPki {
  const f = (n: string): string => join(dir, `${name}-${n}`);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  execFileSync('openssl', ['req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.pem'), '-subj', '/CN=Sigil Test Web CA', '-days', '2'], { stdio: 'pipe' });
  execFileSync('openssl', ['req', ...ec, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=localhost'], { stdio: 'pipe' });
  writeFileSync(f('ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n');
  execFileSync('openssl', ['x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('server.pem'), '-days', '2', '-extfile', f('ext.cnf')], { stdio: 'pipe' });
  execFileSync('chmod', ['0600', f('server.key'), f('ca.key')]);
  return { caFile: f('ca.pem'), caPem: readFileSync(f('ca.pem'), 'utf8'), certFile: f('server.pem'), keyFile: f('server.key') };
}
