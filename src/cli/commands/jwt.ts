/** `sigil jwt mint`: a JWT-SVID for any ID of the trust domain, printed (or written 0600 with --write). */
import { writeFile } from 'node:fs/promises';
import type { CommandIo } from '../io.js';
import { durationSeconds, parseArgs, usageError } from './args.js';
import { isoSeconds, outputFormat, printJson, reportError, withAdmin } from './output.js';

const USAGE = `usage: sigil jwt mint --spiffe-id ID --audience AUD... [--ttl 5m] [--write FILE] [--socket PATH | --config FILE] [--output table|json]
`;

/** Runs `sigil jwt …`. */
export async function run(argv: string[], io: CommandIo): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'mint') {
    io.out(USAGE);
    return sub === '--help' || sub === '-h' ? 0 : 2;
  }
  try {
    const args = parseArgs(rest, { values: ['spiffe-id', 'ttl', 'write'], repeatable: ['audience'] });
    const spiffeId = args.get('spiffe-id');
    const audience = args.all('audience');
    if (spiffeId === undefined || audience.length === 0) throw usageError('--spiffe-id and at least one --audience are required');
    const ttlSeconds = durationSeconds(args, 'ttl', '5m');
    return await withAdmin(io, args, async (client) => {
      const r = await client.call<{ token: string; spiffe_id: string; expires_at: string }>('Mint', 'MintJwtSvid', { spiffe_id: spiffeId, audience, ttl_seconds: ttlSeconds });
      const write = args.get('write');
      if (write !== undefined) await writeFile(write, `${r.token}\n`, { mode: 0o600 });
      if (outputFormat(args) === 'json') printJson(io, { spiffeId: r.spiffe_id, expiresAt: Number(r.expires_at), ...(write === undefined ? { token: r.token } : { written: write }) });
      else if (write === undefined) io.out(`${r.token}\n`);
      else io.out(`JWT-SVID for ${r.spiffe_id} (expires ${isoSeconds(r.expires_at)}) written to ${write}\n`);
      return 0;
    });
  } catch (err) {
    return reportError(io, err);
  }
}
