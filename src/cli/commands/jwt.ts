/** `sigil jwt mint`: a JWT-SVID for any ID of the trust domain, printed (or written 0600 with --write). */
import { writeFile } from 'node:fs/promises';
import type { CommandIo } from '../io.js';
import { durationSeconds, usageError, type ParsedArgs } from './args.js';
import { isoSeconds, outputFormat, printJson, reportError, withAdmin } from './output.js';
import { jwtSvidView } from './views.js';

/** Runs `sigil jwt mint`. */
export async function run(_command: string, args: ParsedArgs, io: CommandIo): Promise<number> {
  try {
    const spiffeId = args.get('spiffe-id');
    const audience = args.all('audience');
    if (spiffeId === undefined || audience.length === 0) throw usageError('--spiffe-id and at least one --audience are required');
    const ttlSeconds = durationSeconds(args, 'ttl');
    return await withAdmin(io, args, async (client) => {
      const r = await client.call<{ token: string; spiffe_id: string; expires_at: string }>('Mint', 'MintJwtSvid', { spiffe_id: spiffeId, audience, ttl_seconds: ttlSeconds });
      const write = args.get('write');
      if (write !== undefined) await writeFile(write, `${r.token}\n`, { mode: 0o600 });
      if (outputFormat(args) === 'json') {
        printJson(io, { svid: jwtSvidView({ spiffeId: r.spiffe_id, expiresAt: r.expires_at, ...(write === undefined ? { token: r.token } : {}) }), ...(write === undefined ? {} : { written: write }) });
      }
      else if (write === undefined) io.out(`${r.token}\n`);
      else io.out(`JWT-SVID for ${r.spiffe_id} (expires ${isoSeconds(r.expires_at)}) written to ${write}\n`);
      return 0;
    });
  } catch (err) {
    return reportError(io, err);
  }
}
