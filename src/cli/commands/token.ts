/** `sigil token generate`: a one-time join token for a new node (printed once, stored only hashed). */
import type { CommandIo } from '../io.js';
import { durationSeconds, parseArgs } from './args.js';
import { isoSeconds, outputFormat, printFields, printJson, reportError, withAdmin } from './output.js';

const USAGE = `usage: sigil token generate [--ttl 10m] [--socket PATH | --config server.yaml] [--output table|json]

Prints a one-time join token. Pass it to the agent through a file (never a flag or env).
The agent's SPIFFE ID will be spiffe://<td>/sigil/agent/join_token/<token id>.
`;

/** Runs `sigil token …`. */
export async function run(argv: string[], io: CommandIo): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'generate') {
    io.out(USAGE);
    return sub === '--help' || sub === '-h' ? 0 : 2;
  }
  try {
    const args = parseArgs(rest, { values: ['ttl'] });
    if (args.has('help')) {
      io.out(USAGE);
      return 0;
    }
    const ttlSeconds = durationSeconds(args, 'ttl', '10m');
    return await withAdmin(io, args, async (client) => {
      const r = await client.call<{ token: string; token_id: string; agent_id: string; expires_at: string }>('JoinTokens', 'CreateJoinToken', { ttl_seconds: ttlSeconds });
      if (outputFormat(args) === 'json') printJson(io, { token: r.token, tokenId: r.token_id, agentId: r.agent_id, expiresAt: Number(r.expires_at) });
      else
        printFields(io, [
          ['Token', r.token],
          ['Token ID', r.token_id],
          ['Agent ID', r.agent_id],
          ['Expires', isoSeconds(r.expires_at)],
        ]);
      return 0;
    });
  } catch (err) {
    return reportError(io, err);
  }
}
