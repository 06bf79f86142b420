/**
 * `sigil x509 mint`: an X.509-SVID for any ID of the trust domain. The key is generated
 * here and the server signs its CSR; key, SVID and bundle are written to files (the key
 * 0600), never printed.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { toPem } from '../../common/x509.js';
import { generateKeyAndCsr } from '../../server/server-svid.js';
import type { CommandIo } from '../io.js';
import { durationSeconds, usageError, type ParsedArgs } from './args.js';
import { isoSeconds, outputFormat, printFields, printJson, reportError, serialForm, withAdmin } from './output.js';
import { x509SvidView } from './views.js';

/** Runs `sigil x509 mint`: writes DIR/svid.pem (chain, leaf first), DIR/key.pem (PKCS#8, mode 0600) and DIR/bundle.pem. */
export async function run(_command: string, args: ParsedArgs, io: CommandIo): Promise<number> {
  try {
    const spiffeId = args.get('spiffe-id');
    const dir = args.get('write');
    if (spiffeId === undefined || dir === undefined) throw usageError('--spiffe-id and --write are required');
    const ttlSeconds = durationSeconds(args, 'ttl');
    return await withAdmin(io, args, async (client) => {
      const { csr, pkcs8 } = await generateKeyAndCsr();
      const r = await client.call<{ spiffe_id: string; cert_chain: Buffer[]; serial: string; expires_at: string; x509_authorities: Buffer[] }>('Mint', 'MintX509Svid', {
        spiffe_id: spiffeId,
        csr,
        ttl_seconds: ttlSeconds,
        dns_names: args.all('dns'),
      });
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await writeFile(join(dir, 'svid.pem'), r.cert_chain.map((c) => toPem(c, 'CERTIFICATE')).join(''), { mode: 0o644 });
      await writeFile(join(dir, 'key.pem'), toPem(pkcs8, 'PRIVATE KEY'), { mode: 0o600 });
      pkcs8.fill(0);
      await writeFile(join(dir, 'bundle.pem'), r.x509_authorities.map((c) => toPem(c, 'CERTIFICATE')).join(''), { mode: 0o644 });
      if (outputFormat(args) === 'json') {
        printJson(io, {
          svid: x509SvidView({ spiffeId: r.spiffe_id, serial: r.serial, expiresAt: r.expires_at }),
          written: { svid: join(dir, 'svid.pem'), key: join(dir, 'key.pem'), bundle: join(dir, 'bundle.pem') },
        });
      } else {
        printFields(io, [
          ['SPIFFE ID', r.spiffe_id],
          ['Serial', serialForm(r.serial)],
          ['Expires', isoSeconds(r.expires_at)],
          ['Written to', dir],
        ]);
      }
      return 0;
    });
  } catch (err) {
    return reportError(io, err);
  }
}
